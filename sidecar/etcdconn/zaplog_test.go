package etcdconn_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/traefik-sd/traefik-sd/sidecar/etcdconn"
	"go.uber.org/zap"
)

func TestEtcdClientWarningsReachTheLog(t *testing.T) {
	var buf bytes.Buffer
	log := etcdconn.ZapLogger(slog.New(slog.NewTextHandler(&buf, nil)), "--etcd")
	log.Info("chatter")
	log.With(zap.String("target", "etcd-endpoints://0x1/127.0.0.1:2379")).Warn("retrying of unary invoker failed", zap.Int("attempt", 2))
	log.Error("lease keepalive lost")
	out := buf.String()
	if strings.Contains(out, "chatter") {
		t.Errorf("info reached the log: %s", out)
	}
	for _, want := range []string{`level=WARN msg="retrying of unary invoker failed"`, `source="etcd client"`, "option=--etcd",
		"target=etcd-endpoints://0x1/127.0.0.1:2379", "attempt=2", `level=ERROR msg="lease keepalive lost"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %s:\n%s", want, out)
		}
	}
}
