package watch_test

import (
	"context"
	"fmt"
	"math"
	"sort"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/internal/testbed"
	"github.com/traefik-sd/traefik-sd/sidecar/watch"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// startEtcd starts an etcd of the test's own and returns a client of it,
// both stopped when the test ends.
func startEtcd(t *testing.T) *clientv3.Client {
	etcd := testbed.StartEtcd(t, t.TempDir())
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	testbed.Must(t, err, "client")
	t.Cleanup(func() { client.Close() })
	return client
}

func TestListPagesAtOneRevision(t *testing.T) {
	client := startEtcd(t)
	ctx := testbed.Context(t, time.Minute)
	n := watch.PageSize*2 + 17
	for i := 0; i < n; i += 100 {
		var ops []clientv3.Op
		for j := i; j < i+100 && j < n; j++ {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("root/k%06d", j), "v"))
		}
		_, err := client.Txn(ctx).Then(ops...).Commit()
		testbed.Must(t, err, "load")
	}
	_, err := client.Put(ctx, "rootless", "outside the prefix")
	testbed.Must(t, err, "put")
	w := &watch.Watcher{Client: client, Prefix: "root"}
	b, err := w.List(ctx)
	testbed.Must(t, err, "list")
	if len(b.Events) != n || b.Events[0].Key != "k000000" || b.Events[n-1].Key != fmt.Sprintf("k%06d", n-1) {
		t.Fatalf("listed %d keys (first %v), want %d", len(b.Events), b.Events[0], n)
	}

	// Run hands out the listing, then each change as its own batch. (A
	// watcher that has listed would re-read only what changed since.)
	w = &watch.Watcher{Client: client, Prefix: "root"}
	reports := make(chan watch.Report, 16)
	batches := make(chan watch.Batch, 16)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { w.Run(runCtx, reports); close(done) }()
	go func() {
		for r := range reports {
			if r.Batch != nil {
				batches <- *r.Batch
			}
		}
	}()
	defer func() { cancel(); <-done; close(reports) }()
	// The listing comes page by page, in key order, none larger than a
	// page, the last without More.
	listed := 0
	for part := 0; ; part++ {
		page := <-batches
		if !page.Snapshot || page.Part != part || len(page.Events) > watch.PageSize || page.Revision != b.Revision {
			t.Fatalf("page %d: snapshot %v, part %d, %d events, revision %d (listing's %d)", part, page.Snapshot, page.Part, len(page.Events), page.Revision, b.Revision)
		}
		for _, e := range page.Events {
			if want := fmt.Sprintf("k%06d", listed); e.Key != want {
				t.Fatalf("page %d: key %s where %s comes", part, e.Key, want)
			}
			listed++
		}
		if !page.More {
			break
		}
	}
	if listed != n {
		t.Fatalf("the pages listed %d keys, want %d", listed, n)
	}
	_, err = client.Put(ctx, "root/new", "x")
	testbed.Must(t, err, "put")
	select {
	case b := <-batches:
		if b.Snapshot || len(b.Events) != 1 || b.Events[0].Key != "new" {
			t.Fatalf("change batch: %+v", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no batch for a change")
	}
}

// A listing asks for the ranges between the keys the last one remembered.
// Whatever changed in between (keys before the first split, after the last,
// on a split itself, deleted or new), it must read exactly what one
// unlimited read of the prefix reads at its revision.
func TestListBetweenSplitsReadsThePrefixWhole(t *testing.T) {
	client := startEtcd(t)
	ctx := testbed.Context(t, time.Minute)
	var ops []clientv3.Op
	for i := 0; i < 100; i++ {
		ops = append(ops, clientv3.OpPut(fmt.Sprintf("root/k%03d", i), fmt.Sprint(i)))
	}
	_, err := client.Txn(ctx).Then(ops...).Commit()
	testbed.Must(t, err, "load")
	w := &watch.Watcher{Client: client, Prefix: "root", PageSize: 7, SplitEvery: 10}
	same := func(step string) {
		t.Helper()
		b, err := w.List(ctx)
		testbed.Must(t, err, "%s", step)
		whole, err := client.Get(ctx, "root/", clientv3.WithPrefix(), clientv3.WithRev(b.Revision))
		testbed.Must(t, err, "%s", step)
		if len(b.Events) != len(whole.Kvs) {
			t.Fatalf("%s: listed %d keys, the prefix holds %d", step, len(b.Events), len(whole.Kvs))
		}
		for i, kv := range whole.Kvs {
			if e := b.Events[i]; "root/"+e.Key != string(kv.Key) || e.Value != string(kv.Value) {
				t.Fatalf("%s: key %d listed as %s=%s, etcd holds %s=%s", step, i, e.Key, e.Value, kv.Key, kv.Value)
			}
		}
	}
	same("first listing")
	for _, op := range []clientv3.Op{
		clientv3.OpPut("root/a", "before every split"),
		clientv3.OpDelete("root/k010"), // a split itself
		clientv3.OpDelete("root/k011"),
		clientv3.OpPut("root/k010x", "just after a deleted split"),
		clientv3.OpPut("root/k055", "changed"),
		clientv3.OpPut("root/z", "after every split"),
		clientv3.OpDelete("root/k09", clientv3.WithPrefix()),
	} {
		_, err := client.Do(ctx, op)
		testbed.Must(t, err, "change")
	}
	same("listing after changes")
	_, err = client.Delete(ctx, "root/", clientv3.WithPrefix())
	testbed.Must(t, err, "delete all")
	same("listing of an emptied prefix")
	_, err = client.Put(ctx, "root/only", "1")
	testbed.Must(t, err, "put")
	same("listing after the prefix was emptied")
}

// TestRangesReadOnlyWhatARoleGrants: an etcd role grants the sidecar the
// parts of a Backend.AI root key it reads and not the coordinator's secrets
// beside them. etcd refuses that user the whole prefix; with Ranges the
// watcher lists each granted range at one revision, cut at its splits as
// any listing, and follows each, and a change in two ranges in one
// transaction reaches it whole.
func TestRangesReadOnlyWhatARoleGrants(t *testing.T) {
	etcd := testbed.StartEtcd(t, t.TempDir())
	root, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	testbed.Must(t, err, "client")
	defer root.Close()
	ctx := testbed.Context(t, time.Minute)
	const prefix = "backend/worker_w1/"
	ranges := []string{"http/routers/", "http/services/", "http/middlewares/bai_sd_", "tcp/"}
	put := func(kv ...string) {
		t.Helper()
		var ops []clientv3.Op
		for i := 0; i < len(kv); i += 2 {
			ops = append(ops, clientv3.OpPut(prefix+kv[i], kv[i+1]))
		}
		_, err := root.Txn(ctx).Then(ops...).Commit()
		testbed.Must(t, err, "put %v", kv)
	}
	put("http/routers/bai_router_c1/rule", "Host(`a`)", "http/routers/bai_router_c1/middlewares/0", "bai_sd_c1",
		"http/services/bai_service_c1/loadBalancer/servers/0/url", "http://10.0.0.1:80/",
		"http/middlewares/bai_sd_c1/plugin/traefik-sd/circuitid", "c1",
		"http/middlewares/bai_appproxy_plugin_c1/plugin/appproxy-traefik-plugin/jwt_secret", "s3cret",
		"http/middlewares/CORSHeaders/headers/accessControlAllowHeaders", "*",
		"tcp/routers/bai_router_c2/rule", "ClientIP(`0.0.0.0/0`)")

	for _, step := range []func() error{
		func() error { _, err := root.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := root.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := root.RoleAdd(ctx, "traefik-sd"); return err },
		func() error {
			for _, r := range ranges {
				if _, err := root.RoleGrantPermission(ctx, "traefik-sd", prefix+r, clientv3.GetPrefixRangeEnd(prefix+r), clientv3.PermissionType(clientv3.PermRead)); err != nil {
					return err
				}
			}
			return nil
		},
		func() error { _, err := root.UserAdd(ctx, "traefik-sd", "pw"); return err },
		func() error { _, err := root.UserGrantRole(ctx, "traefik-sd", "traefik-sd"); return err },
		func() error { _, err := root.AuthEnable(ctx); return err },
	} {
		testbed.Must(t, step(), "setting up the role")
	}
	admin, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.Endpoint}, Username: "root", Password: "rootpw", DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	testbed.Must(t, err, "root client")
	defer admin.Close()
	root = admin
	sd, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.Endpoint}, Username: "traefik-sd", Password: "pw", DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	testbed.Must(t, err, "the sidecar's client")
	defer sd.Close()

	whole := &watch.Watcher{Client: sd, Prefix: "backend/worker_w1", Timeout: 5 * time.Second}
	if _, err := whole.List(ctx); err == nil {
		t.Fatal("the role reads the whole root key: it proves nothing")
	}
	w := &watch.Watcher{Client: sd, Prefix: "backend/worker_w1", Ranges: ranges, Timeout: 5 * time.Second, SplitEvery: 2, PageSize: 2}
	want := "http/middlewares/bai_sd_c1/plugin/traefik-sd/circuitid http/routers/bai_router_c1/middlewares/0 http/routers/bai_router_c1/rule " +
		"http/services/bai_service_c1/loadBalancer/servers/0/url tcp/routers/bai_router_c2/rule"
	for i := 0; i < 2; i++ { // the second listing is cut at the first one's splits
		b, err := w.List(ctx)
		testbed.Must(t, err, "listing the ranges")
		var keys []string
		for _, ev := range b.Events {
			keys = append(keys, ev.Key)
		}
		if got := fmt.Sprint(keys); got != "["+want+"]" {
			t.Fatalf("listing %d: %s\nwant [%s]", i+1, got, want)
		}
	}

	reports := make(chan watch.Report, 16)
	events := make(chan watch.Event, 16)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { w.Run(runCtx, reports); close(done) }()
	go func() {
		for r := range reports {
			if r.Batch != nil && !r.Batch.Snapshot {
				for _, ev := range r.Batch.Events {
					events <- ev
				}
			}
			if r.Status != nil && r.Status.Err != nil {
				t.Errorf("the ranged watch failed: %v", r.Status.Err)
			}
		}
	}()
	defer func() { cancel(); <-done; close(reports) }()
	// A secret changes, then one transaction changes a router and a service.
	put("http/middlewares/bai_appproxy_plugin_c1/plugin/appproxy-traefik-plugin/jwt_secret", "rotated")
	put("http/routers/bai_router_c1/rule", "Host(`b`)", "http/services/bai_service_c1/loadBalancer/servers/0/url", "http://10.0.0.2:80/")
	got := map[string]string{}
	for len(got) < 2 {
		select {
		case ev := <-events:
			got[ev.Key] = ev.Value
		case <-time.After(10 * time.Second):
			t.Fatalf("changes seen: %v", got)
		}
	}
	if got["http/routers/bai_router_c1/rule"] != "Host(`b`)" || got["http/services/bai_service_c1/loadBalancer/servers/0/url"] != "http://10.0.0.2:80/" {
		t.Errorf("changes seen: %v", got)
	}
	select {
	case ev := <-events:
		t.Errorf("an event outside the ranges: %+v", ev)
	case <-time.After(300 * time.Millisecond):
	}
}

// A first listing has no splits to read between: paging one range of n
// keys would make etcd count n²/(2·page) keys. Cutting the range in halves
// as it goes must keep the count near n·log(n/page), and read every key in
// order all the same, however the keys are spread.
func TestAFirstListingDoesNotCountTheRangeForEveryPage(t *testing.T) {
	client := startEtcd(t)
	ctx := testbed.Context(t, time.Minute)
	const n, page = 6000, 50
	var keys []string
	for i := 0; i < n; i++ {
		// Three shapes: dense numbers, names sharing a long prefix, and a
		// few keys far apart in byte value.
		switch i % 3 {
		case 0:
			keys = append(keys, fmt.Sprintf("root/http/routers/bai_router_%08d/rule", i))
		case 1:
			keys = append(keys, fmt.Sprintf("root/http/services/bai_service_%x/loadBalancer/servers/0/url", i*7919))
		default:
			keys = append(keys, fmt.Sprintf("root/%c%d", 'A'+i%50, i))
		}
	}
	for i := 0; i < n; i += 100 {
		var ops []clientv3.Op
		for _, k := range keys[i:min(i+100, n)] {
			ops = append(ops, clientv3.OpPut(k, "v"))
		}
		_, err := client.Txn(ctx).Then(ops...).Commit()
		testbed.Must(t, err, "load")
	}
	sort.Strings(keys)
	w := &watch.Watcher{Client: client, Prefix: "root", PageSize: page}
	b, err := w.List(ctx)
	testbed.Must(t, err, "list")
	if len(b.Events) != n {
		t.Fatalf("listed %d keys, want %d", len(b.Events), n)
	}
	for i, e := range b.Events {
		if "root/"+e.Key != keys[i] {
			t.Fatalf("key %d listed as %s, want %s", i, e.Key, keys[i])
		}
	}
	quadratic := int64(n) * n / (2 * page)
	bound := int64(n) * 4 * int64(math.Log2(n/page))
	t.Logf("etcd counted %d keys for the listing; one paged range: about %d", w.Counted(), quadratic)
	if w.Counted() > bound {
		t.Errorf("etcd counted %d keys for a listing of %d in pages of %d, more than %d (one range paged: about %d)", w.Counted(), n, page, bound, quadratic)
	}
}

// middle is strictly between its bounds whenever it says so.
func TestMiddleIsBetween(t *testing.T) {
	for _, c := range [][2]string{
		{"a", "b"}, {"a", "a\x00\x00\x00\x00\x00\x00\x00\x01"}, {"root/k000010\x00", "root0"},
		{"x/", "x0"}, {"abc", "abd"}, {"", "\xff"}, {"k\xff\xff\xff\xff\xff\xff\xff\xff", "l"},
		{"http/routers/a", "http/services/z"}, {"a", "a\x00"},
	} {
		m, ok := watch.Middle(c[0], c[1])
		if ok && !(c[0] < m && m < c[1]) {
			t.Errorf("middle(%q, %q) = %q, not between", c[0], c[1], m)
		}
		t.Logf("middle(%q, %q) = %q %v", c[0], c[1], m, ok)
	}
	if _, ok := watch.Middle("root/k000010\x00", "root0"); !ok {
		t.Error("no middle between a key and its prefix's end")
	}
}

// A page's memory is read into again once the consumer has released it,
// never before: a listing of many pages released as they are applied uses
// the memory of a few, one that keeps its pages gets fresh memory for each,
// and a key kept past Release reads as zeros, not as a later page's key.
func TestAReleasedPageIsReadIntoAgain(t *testing.T) {
	client := startEtcd(t)
	ctx := testbed.Context(t, time.Minute)
	const n, size = 400, 10
	for i := 0; i < n; i += 100 {
		var ops []clientv3.Op
		for j := i; j < i+100; j++ {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("root/k%04d", j), fmt.Sprintf("v%04d", j)))
		}
		_, err := client.Txn(ctx).Then(ops...).Commit()
		testbed.Must(t, err, "load")
	}

	list := func(release bool) (memories int, kept string) {
		w := &watch.Watcher{Client: client, Prefix: "root", PageSize: size}
		seen := map[*watch.Event]bool{}
		listed := 0
		_, err := w.ListPages(ctx, func(b watch.Batch) error {
			for _, e := range b.Events {
				if want := fmt.Sprintf("k%04d=v%04d", listed, listed); e.Key+"="+e.Value != want {
					t.Fatalf("page %d: %s=%s where %s comes", b.Part, e.Key, e.Value, want)
				}
				listed++
			}
			if len(b.Events) > 0 {
				seen[&b.Events[0]] = true
				if b.Part == 0 {
					kept = b.Events[0].Key
				}
			}
			if release {
				b.Release()
			}
			return nil
		})
		testbed.Must(t, err, "list")
		if listed != n {
			t.Fatalf("listed %d keys, want %d", listed, n)
		}
		return len(seen), kept
	}
	if memories, kept := list(true); memories > 8 || kept != "\x00\x00\x00\x00\x00" {
		t.Fatalf("released as applied, %d pages of %d keys used %d memories (want a few) and a key kept past its release reads %q (want zeros)", n/size, size, memories, kept)
	}
	if memories, kept := list(false); memories != n/size || kept != "k0000" {
		t.Fatalf("never released, %d pages used %d memories and the first key reads %q; want %d and k0000", n/size, memories, kept, n/size)
	}
}
