package servicediscovery

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// EtcdPrefix is where a namespace's entries live in Backend.AI's etcd.
func EtcdPrefix(namespace string) string {
	return "/sorna/" + namespace + "/ai/backend/service_discovery/"
}

// EtcdLeaves are an entry's keys relative to <group>/<id>/, one per leaf,
// as Backend.AI's etcd backend flattens ServiceMetadata.
func EtcdLeaves(r Record) map[string]string {
	leaves := map[string]string{
		"id":                              r.ID,
		"display_name":                    r.DisplayName,
		"service_group":                   r.Group,
		"version":                         r.Version,
		"endpoint/address":                r.Endpoint.Address,
		"endpoint/port":                   strconv.Itoa(r.Endpoint.Port),
		"endpoint/protocol":               r.Endpoint.Protocol,
		"endpoint/prometheus_address":     r.Endpoint.PrometheusAddress,
		"health_status/registration_time": strconv.FormatFloat(r.Health.RegistrationTime, 'f', 6, 64),
		"health_status/last_heartbeat":    strconv.FormatFloat(r.Health.LastHeartbeat, 'f', 6, 64),
	}
	for k, v := range r.Labels {
		leaves["labels/"+k] = v
	}
	return leaves
}

// EtcdStore is Backend.AI's etcd backend: one key per leaf under
// /sorna/<namespace>/ai/backend/service_discovery/<group>/<id>/. An entry is
// written whole in one transaction on this sidecar's lease: if the sidecar
// dies the lease expires and the entry's keys vanish together. Where HA
// nodes share a route entry, its keys belong to the last writer's lease;
// if that node dies the entry is absent until another rewrites it, never
// half there.
type EtcdStore struct {
	Client    *clientv3.Client
	Namespace string
	// LeaseTTL is how long the entries outlive a sidecar that died (three
	// heartbeats is right: a live one renews it continuously).
	LeaseTTL time.Duration

	lease clientv3.LeaseID
}

// Name implements Store.
func (s *EtcdStore) Name() string { return "etcd" }

// Prepare grants a lease kept alive while the sidecar runs; when it was
// lost, every entry must be written again on a new one.
func (s *EtcdStore) Prepare(ctx context.Context) (bool, error) {
	if s.lease != 0 {
		if resp, err := s.Client.TimeToLive(ctx, s.lease); err == nil && resp.TTL > 0 {
			return false, nil
		}
		s.lease = 0
	}
	ttl := int64(s.LeaseTTL / time.Second)
	if ttl < 5 {
		ttl = 5
	}
	resp, err := s.Client.Grant(ctx, ttl)
	if err != nil {
		return false, fmt.Errorf("granting the lease: %w", err)
	}
	// Kept alive for the client's life, not this call's.
	ka, err := s.Client.KeepAlive(s.Client.Ctx(), resp.ID)
	if err != nil {
		return false, fmt.Errorf("keeping the lease alive: %w", err)
	}
	go func() {
		for range ka { // drained until the client closes or the lease is lost
		}
	}()
	s.lease = resp.ID
	return true, nil
}

// Put implements Store: each entry in one transaction with the others
// that fit (etcd takes 128 operations in one), never split.
func (s *EtcdStore) Put(ctx context.Context, writes []Write) error {
	prefix := EtcdPrefix(s.Namespace)
	var ops []clientv3.Op
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		_, err := s.Client.Txn(ctx).Then(ops...).Commit()
		ops = ops[:0]
		return err
	}
	for _, w := range writes {
		base := prefix + w.Group + "/" + w.ID + "/"
		leaves := EtcdLeaves(w.Record)
		var entryOps []clientv3.Op
		if w.Old != nil { // leaves the older version had and this one has not
			for k := range EtcdLeaves(Record{Entry: *w.Old}) {
				if _, keep := leaves[k]; !keep {
					entryOps = append(entryOps, clientv3.OpDelete(base+k))
				}
			}
		}
		keys := make([]string, 0, len(leaves))
		for k := range leaves {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			entryOps = append(entryOps, clientv3.OpPut(base+k, leaves[k], clientv3.WithLease(s.lease)))
		}
		if len(ops)+len(entryOps) > 128 {
			if err := flush(); err != nil {
				return err
			}
		}
		ops = append(ops, entryOps...)
	}
	return flush()
}

// Delete implements Store: one prefix delete per entry.
func (s *EtcdStore) Delete(ctx context.Context, entries []Entry) error {
	prefix := EtcdPrefix(s.Namespace)
	for start := 0; start < len(entries); start += 128 {
		end := min(start+128, len(entries))
		ops := make([]clientv3.Op, 0, end-start)
		for _, e := range entries[start:end] {
			ops = append(ops, clientv3.OpDelete(prefix+e.Group+"/"+e.ID+"/", clientv3.WithPrefix()))
		}
		if _, err := s.Client.Txn(ctx).Then(ops...).Commit(); err != nil {
			return err
		}
	}
	return nil
}

// Withdraw implements Store: revoking the lease takes every key with it.
func (s *EtcdStore) Withdraw(ctx context.Context, _ []Entry) {
	if s.lease != 0 {
		_, _ = s.Client.Revoke(ctx, s.lease)
	}
}
