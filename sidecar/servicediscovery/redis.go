package servicediscovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisPrefix and RedisTTL are Backend.AI's (redis_discovery/service_discovery.py):
// a hash service_discovery.<group>.<id> that lives 180 s unless rewritten.
const (
	RedisPrefix = "service_discovery"
	RedisTTL    = 180 * time.Second
)

// RedisKey is the hash of one entry.
func RedisKey(group, id string) string { return RedisPrefix + "." + group + "." + id }

// RedisFields are an entry's hash fields: one per top-level attribute of
// ServiceMetadata.model_dump(), each value JSON as Backend.AI's
// dump_json_str writes it (id a JSON string, endpoint.port an integer,
// health_status floats, labels an object of strings).
func RedisFields(r Record) (map[string]string, error) {
	labels := r.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	fields := map[string]any{
		"id": r.ID, "display_name": r.DisplayName, "service_group": r.Group, "version": r.Version,
		"endpoint": r.Endpoint, "health_status": r.Health, "labels": labels,
	}
	out := make(map[string]string, len(fields))
	for k, v := range fields {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("entry %s field %s: %w", r.ID, k, err)
		}
		out[k] = string(b)
	}
	return out, nil
}

// RedisStore is Backend.AI's Redis backend, its default. Each entry is
// written as Backend.AI's heartbeat writes it: HSET of every field then
// EXPIRE, in one MULTI, so the Manager's HGETALL never sees half an entry.
// Keys outlive a sidecar that died by up to their TTL; the next run sweeps
// what it no longer publishes (Sweep).
type RedisStore struct {
	Client *redis.Client
	// TTL of every entry (RedisTTL if zero).
	TTL time.Duration
	// Batch is how many entries go in one MULTI (100 if zero).
	Batch int

	server string // run_id of the server that answered the last Prepare
}

// Name implements Store.
func (s *RedisStore) Name() string { return "redis" }

// Prepare implements Store: every write carries its TTL, nothing to renew.
// But another server than the last one (a Sentinel failover, a restart)
// may lack what was written, a delete above all: a demoted master takes
// writes until the client follows the switch, and the new master never
// sees them. Then the store is fresh: every entry is written again and
// what this sidecar no longer publishes is swept.
func (s *RedisStore) Prepare(ctx context.Context) (bool, error) {
	id, err := s.serverID(ctx)
	if err != nil || id == "" {
		return false, err
	}
	fresh := s.server != "" && id != s.server
	s.server = id
	return fresh, nil
}

// serverID is the run_id of the server the client talks to, or "" when the
// server refuses INFO (an ACL user without it, a renamed command): a change
// then goes unnoticed, and heartbeats and the TTL heal what it lost.
func (s *RedisStore) serverID(ctx context.Context) (string, error) {
	info, err := s.Client.Info(ctx, "server").Result()
	var refused redis.Error
	if errors.As(err, &refused) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(info, "\n") {
		if id, ok := strings.CutPrefix(strings.TrimSpace(line), "run_id:"); ok {
			return id, nil
		}
	}
	return "", nil
}

func (s *RedisStore) ttl() time.Duration {
	if s.TTL > 0 {
		return s.TTL
	}
	return RedisTTL
}

func (s *RedisStore) batch() int {
	if s.Batch > 0 {
		return s.Batch
	}
	return 100
}

// Put implements Store.
func (s *RedisStore) Put(ctx context.Context, writes []Write) error {
	for start := 0; start < len(writes); start += s.batch() {
		chunk := writes[start:min(start+s.batch(), len(writes))]
		_, err := s.Client.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for _, w := range chunk {
				fields, err := RedisFields(w.Record)
				if err != nil {
					return err
				}
				key := RedisKey(w.Group, w.ID)
				p.HSet(ctx, key, fields)
				p.Expire(ctx, key, s.ttl())
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Delete implements Store.
func (s *RedisStore) Delete(ctx context.Context, entries []Entry) error {
	for start := 0; start < len(entries); start += s.batch() {
		chunk := entries[start:min(start+s.batch(), len(entries))]
		keys := make([]string, len(chunk))
		for i, e := range chunk {
			keys[i] = RedisKey(e.Group, e.ID)
		}
		if err := s.Client.Del(ctx, keys...).Err(); err != nil {
			return err
		}
	}
	return nil
}

// Withdraw implements Store: a stopped sidecar's entries go at once rather
// than living out their TTL.
func (s *RedisStore) Withdraw(ctx context.Context, entries []Entry) {
	_ = s.Delete(ctx, entries)
}

// Sweep implements Sweeper: it scans each group as the Manager does and
// deletes the entries stale says are an earlier run's leftovers. An entry
// whose labels cannot be read is not ours to judge, and is left alone.
func (s *RedisStore) Sweep(ctx context.Context, groups []string, stale func(group, id string, labels map[string]string) bool) (int, error) {
	removed := 0
	for _, group := range groups {
		prefix := RedisPrefix + "." + group + "."
		iter := s.Client.Scan(ctx, 0, prefix+"*", 100).Iterator()
		var doomed []string
		for iter.Next(ctx) {
			key := iter.Val()
			id := strings.TrimPrefix(key, prefix)
			raw, err := s.Client.HGet(ctx, key, "labels").Result()
			if errors.Is(err, redis.Nil) {
				continue
			}
			if err != nil {
				return removed, err
			}
			var labels map[string]string
			if json.Unmarshal([]byte(raw), &labels) != nil {
				continue
			}
			if stale(group, id, labels) {
				doomed = append(doomed, key)
			}
		}
		if err := iter.Err(); err != nil {
			return removed, err
		}
		if len(doomed) > 0 {
			if err := s.Client.Del(ctx, doomed...).Err(); err != nil {
				return removed, err
			}
			removed += len(doomed)
		}
	}
	return removed, nil
}
