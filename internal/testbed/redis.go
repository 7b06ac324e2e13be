package testbed

import (
	"context"
	"path/filepath"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Redis is a redis-server (Debian's) on a free loopback port, with nothing
// persisted: a restart starts empty, as a cache-only "live" Redis does.
type Redis struct {
	*Process
	Address string
}

// StartRedis starts redis-server with its working files in dir.
func StartRedis(tb T, dir string) *Redis {
	tb.Helper()
	port := FreePort(tb)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p := Start(tb, &Process{
		Name: "redis-server",
		Path: Binary(tb, "REDIS_BIN", "redis-server"),
		Args: []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no",
			"--dir", dir, "--daemonize", "no", "--protected-mode", "yes"},
		Dir: dir,
		Log: filepath.Join(dir, "redis.log"),
	})
	r := &Redis{Process: p, Address: addr}
	client := r.Client(tb)
	Eventually(tb, 30*time.Second, "redis-server answers PING", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := client.Ping(ctx).Err()
		return err == nil, errString(err)
	})
	return r
}

// Client is a client of this server, closed when the test ends.
func (r *Redis) Client(tb T) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Address, DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
