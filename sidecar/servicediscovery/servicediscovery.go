// Package servicediscovery writes the published targets into Backend.AI's
// ServiceDiscovery store (its etcd backend), so that the Manager's existing
// GET /metrics/service_discovery serves them with no Prometheus change.
//
// Each target is one ServiceMetadata entry, one key per leaf, under
// /sorna/<namespace>/ai/backend/service_discovery/<group>/<id>/. One
// malformed or partial entry makes the Manager's whole endpoint fail, so an
// entry is always written whole in one transaction, on this sidecar's lease:
// if the sidecar dies, the lease expires and the entry's keys vanish
// together. The heartbeat rewrites whole entries for the same reason: where
// HA nodes share a route entry, its keys belong to the last writer's lease,
// and if that node dies the entry is absent until another rewrites it,
// never half there.
package servicediscovery

import (
	"context"
	"crypto/sha1" //nolint:gosec // UUIDv5 is defined with SHA-1
	"encoding/hex"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/targets"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Groups written: traefik-sd's own. model-services belongs to the Manager,
// which deletes there whatever it did not write; the AppProxy processes
// register themselves.
var Groups = map[string]bool{targets.GroupRoute: true, targets.GroupTraefik: true}

// idNamespace is the UUIDv5 namespace of traefik-sd's entry ids.
var idNamespace = [16]byte{0x6f, 0x2c, 0x1d, 0x4e, 0x8a, 0x37, 0x4b, 0x5f, 0x9e, 0x10, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78}

// UUIDv5 is the name-based UUID (RFC 4122 §4.3) of name in traefik-sd's namespace.
func UUIDv5(name string) string {
	h := sha1.New() //nolint:gosec
	h.Write(idNamespace[:])
	h.Write([]byte(name))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	x := hex.EncodeToString(u[:])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// Entry is one ServiceMetadata, as relative keys and values (without the
// health_status leaves, which are stamped when written).
type Entry struct {
	ID     string
	Group  string
	Leaves map[string]string
}

// EntryOf makes the entry of a target, or says why it cannot be one: the
// Manager serves plain labels, so a target with its own metrics path or
// scheme (which Prometheus would then not use) is left out.
func EntryOf(t targets.Target, version string) (Entry, error) {
	group := t.Label("service_group")
	if !Groups[group] {
		return Entry{}, fmt.Errorf("group %q is not traefik-sd's", group)
	}
	host, port, err := net.SplitHostPort(t.Address)
	if err != nil {
		return Entry{}, fmt.Errorf("address %q: %w", t.Address, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return Entry{}, fmt.Errorf("address %q: port", t.Address)
	}
	leaves := map[string]string{
		"service_group":               group,
		"version":                     version,
		"endpoint/address":            host,
		"endpoint/port":               strconv.Itoa(p),
		"endpoint/protocol":           "http",
		"endpoint/prometheus_address": t.Address,
	}
	for _, l := range t.Labels {
		switch {
		case l.Name == "__metrics_path__" || l.Name == "__scheme__":
			return Entry{}, fmt.Errorf("%s needs %s=%s, which the Manager's endpoint cannot carry", t.Address, l.Name, l.Value)
		case l.Name == "service_group":
		default:
			leaves["labels/"+l.Name] = l.Value
		}
	}
	// The id names what the target is, so that every HA node writes a route
	// under the same id, and each node's own Traefik under its own.
	name := strings.Join([]string{group, t.Address, t.Label("circuit_id"), t.Label("route_id"), t.Label("session_id"), t.Label("worker_node")}, "\n")
	id := UUIDv5(name)
	leaves["id"] = id
	display := "traefik-sd " + group + " " + t.Address
	if c := t.Label("circuit_id"); c != "" {
		display = "circuit " + c + " " + t.Address
	}
	leaves["display_name"] = display
	return Entry{ID: id, Group: group, Leaves: leaves}, nil
}

func sameLeaves(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Prefix is where a namespace's entries live.
func Prefix(namespace string) string {
	return "/sorna/" + namespace + "/ai/backend/service_discovery/"
}

// Writer keeps the store in step with the targets it is given. One
// goroutine owns it (Run).
type Writer struct {
	Client    *clientv3.Client
	Namespace string
	Version   string
	// Heartbeat is how often every entry is rewritten with a fresh
	// last_heartbeat; the lease lives three heartbeats.
	Heartbeat time.Duration
	// Timeout bounds each etcd call.
	Timeout time.Duration
	// OnError and OnSync report to the owner (metrics, logs); may be nil.
	OnError func(err error)
	OnSync  func(entries, skipped int)

	lease      clientv3.LeaseID
	registered map[string]float64 // id -> registration_time
	written    map[string]Entry   // what the store holds of ours, by id
	want       map[string]Entry
}

// Run writes until ctx is done, then revokes the lease so that this
// sidecar's entries go at once. updates delivers the latest targets.
func (w *Writer) Run(ctx context.Context, updates <-chan []targets.Target) {
	w.registered, w.written, w.want = map[string]float64{}, map[string]Entry{}, map[string]Entry{}
	heartbeat := time.NewTicker(w.Heartbeat)
	defer heartbeat.Stop()
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	defer w.revoke()
	for {
		dirty := false
		select {
		case <-ctx.Done():
			return
		case ts := <-updates:
			w.setTargets(ts)
			dirty = true
		case <-heartbeat.C:
			w.written = map[string]Entry{} // rewrite every entry whole, with a fresh heartbeat
			dirty = true
		case <-retry.C:
			dirty = true
		}
		if dirty {
			if err := w.sync(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				if w.OnError != nil {
					w.OnError(err)
				}
				retry.Reset(2 * time.Second)
			}
		}
	}
}

func (w *Writer) setTargets(ts []targets.Target) {
	want := map[string]Entry{}
	skipped := 0
	for _, t := range ts {
		if !Groups[t.Label("service_group")] {
			continue
		}
		e, err := EntryOf(t, w.Version)
		if err != nil {
			skipped++
			continue
		}
		want[e.ID] = e
	}
	w.want = want
	if w.OnSync != nil {
		w.OnSync(len(want), skipped)
	}
}

func (w *Writer) call(ctx context.Context) (context.Context, context.CancelFunc) {
	t := w.Timeout
	if t <= 0 {
		t = 10 * time.Second
	}
	return context.WithTimeout(ctx, t)
}

// sync writes the entries that differ from what was written, whole, and
// deletes the ones no longer wanted.
func (w *Writer) sync(ctx context.Context) error {
	if err := w.ensureLease(ctx); err != nil {
		return err
	}
	prefix := Prefix(w.Namespace)
	now := float64(time.Now().UnixNano()) / 1e9
	ids := make([]string, 0, len(w.want))
	for id := range w.want {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var ops []clientv3.Op
	var batch []string
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		cctx, cancel := w.call(ctx)
		defer cancel()
		if _, err := w.Client.Txn(cctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("writing ServiceDiscovery entries: %w", err)
		}
		for _, id := range batch {
			w.written[id] = w.want[id]
		}
		ops, batch = ops[:0], batch[:0]
		return nil
	}
	for _, id := range ids {
		e := w.want[id]
		if old, ok := w.written[id]; ok && sameLeaves(old.Leaves, e.Leaves) {
			continue
		}
		reg, ok := w.registered[id]
		if !ok {
			reg = now
			w.registered[id] = reg
		}
		base := prefix + e.Group + "/" + id + "/"
		var entryOps []clientv3.Op
		// Leaves an older version of this entry had and this one has not.
		if old, ok := w.written[id]; ok {
			for k := range old.Leaves {
				if _, keep := e.Leaves[k]; !keep {
					entryOps = append(entryOps, clientv3.OpDelete(base+k))
				}
			}
		}
		keys := make([]string, 0, len(e.Leaves))
		for k := range e.Leaves {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			entryOps = append(entryOps, clientv3.OpPut(base+k, e.Leaves[k], clientv3.WithLease(w.lease)))
		}
		stamp := strconv.FormatFloat(now, 'f', 6, 64)
		entryOps = append(entryOps,
			clientv3.OpPut(base+"health_status/registration_time", strconv.FormatFloat(reg, 'f', 6, 64), clientv3.WithLease(w.lease)),
			clientv3.OpPut(base+"health_status/last_heartbeat", stamp, clientv3.WithLease(w.lease)))
		// An entry never spans transactions (etcd takes 128 operations in one).
		if len(ops)+len(entryOps) > 128 {
			if err := flush(); err != nil {
				return err
			}
		}
		ops = append(ops, entryOps...)
		batch = append(batch, id)
	}
	for id, e := range w.written {
		if _, ok := w.want[id]; ok {
			continue
		}
		if len(ops)+1 > 128 {
			if err := flush(); err != nil {
				return err
			}
		}
		ops = append(ops, clientv3.OpDelete(prefix+e.Group+"/"+id+"/", clientv3.WithPrefix()))
		delete(w.written, id)
		delete(w.registered, id)
	}
	return flush()
}

// ensureLease grants a lease (three heartbeats long) kept alive while the
// writer runs; when it is lost, every entry is written again on a new one.
func (w *Writer) ensureLease(ctx context.Context) error {
	if w.lease != 0 {
		cctx, cancel := w.call(ctx)
		defer cancel()
		if resp, err := w.Client.TimeToLive(cctx, w.lease); err == nil && resp.TTL > 0 {
			return nil
		}
		w.lease = 0
		w.written = map[string]Entry{}
	}
	cctx, cancel := w.call(ctx)
	defer cancel()
	ttl := int64(3 * w.Heartbeat / time.Second)
	if ttl < 5 {
		ttl = 5
	}
	resp, err := w.Client.Grant(cctx, ttl)
	if err != nil {
		return fmt.Errorf("granting the ServiceDiscovery lease: %w", err)
	}
	ka, err := w.Client.KeepAlive(ctx, resp.ID)
	if err != nil {
		return fmt.Errorf("keeping the ServiceDiscovery lease alive: %w", err)
	}
	go func() {
		for range ka { // drained until ctx ends or the lease is lost
		}
	}()
	w.lease = resp.ID
	return nil
}

func (w *Writer) revoke() {
	if w.lease == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, _ = w.Client.Revoke(ctx, w.lease)
}
