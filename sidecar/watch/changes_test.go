package watch_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/internal/testbed"
	"github.com/traefik-sd/traefik-sd/sidecar/watch"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// heldKeys is what a consumer of the watcher holds: listings replace it,
// changes are applied to it.
type heldKeys struct {
	keys    map[string]string
	listing map[string]string // a listing's pages so far
	rev     int64
}

func (h *heldKeys) apply(b watch.Batch) {
	if b.Snapshot {
		if b.Part == 0 {
			h.listing = map[string]string{}
		}
		for _, e := range b.Events {
			h.listing[e.Key] = e.Value
		}
		if !b.More {
			h.keys, h.listing = h.listing, nil
		}
	} else {
		for _, r := range b.Listed {
			// A listed range: what it lacks was deleted.
			for k := range h.keys {
				if r.Holds(k) && !slices.ContainsFunc(b.Events, func(e watch.Event) bool { return e.Key == k }) {
					delete(h.keys, k)
				}
			}
		}
		for _, e := range b.Events {
			if e.Deleted {
				delete(h.keys, e.Key)
			} else {
				h.keys[e.Key] = e.Value
			}
		}
	}
	h.rev = b.Revision
}

// TestARelistHoldsWhatAListingReads walks etcd through random changes,
// some followed by the watch and some missed (as by a watch that lost its
// revision to a compaction), and re-lists after each: what the consumer
// holds must be exactly what a read of the prefix returns at the
// re-list's revision. A re-list must read only the changes since the
// watcher last knew the prefix, and list an interval between two marks
// if and only if a key held in it was deleted since; it lists the prefix
// whole only when more than half the intervals lost a key.
func TestARelistHoldsWhatAListingReads(t *testing.T) {
	type sizes struct{ split, count int }
	for _, tc := range []struct {
		ranges []string
		sizes
	}{{nil, sizes{7, 7}}, {[]string{"a/", "c/"}, sizes{7, 7}}, {nil, sizes{14, 5}}, {[]string{"a/", "c/"}, sizes{14, 5}}} {
		ranges := tc.ranges
		t.Run(fmt.Sprintf("ranges=%v,split=%d,count=%d", ranges, tc.split, tc.count), func(t *testing.T) {
			client := startEtcd(t)
			ctx := testbed.Context(t, 2*time.Minute)
			rng := rand.New(rand.NewPCG(uint64(len(ranges)), uint64(tc.count)))
			dirs := []string{"a/", "b/", "c/"}
			present := map[string]bool{} // keys in etcd, as written
			var wrote int
			h := &heldKeys{keys: map[string]string{}}

			put := func(k string) {
				wrote++
				_, err := client.Put(ctx, "root/"+k, fmt.Sprintf("v%d", wrote))
				testbed.Must(t, err, "put")
				present[k] = true
			}
			// deleted are the keys the consumer holds that were deleted
			// since the watcher last knew the prefix: the re-list must
			// list the intervals that hold them, and only those.
			deleted := map[string]bool{}
			del := func(k string) {
				_, err := client.Delete(ctx, "root/"+k)
				testbed.Must(t, err, "delete")
				delete(present, k)
				if _, held := h.keys[k]; held {
					deleted[k] = true
				}
			}
			any := func() (string, bool) {
				if len(present) == 0 {
					return "", false
				}
				keys := slices.Sorted(maps.Keys(present))
				return keys[rng.IntN(len(keys))], true
			}
			for i := range 60 {
				put(fmt.Sprintf("%s%03d", dirs[i%3], rng.IntN(1000)))
			}
			// Small pages, splits and marks: many spans, several intervals.
			w := &watch.Watcher{Client: client, Prefix: "root", Ranges: ranges, PageSize: 10, SplitEvery: tc.split, CountEvery: tc.count, Timeout: 10 * time.Second}
			change := func() {
				if rng.IntN(10) == 0 {
					// Most of the tree deleted: a listing is as cheap.
					for _, k := range slices.Sorted(maps.Keys(present)) {
						if rng.IntN(3) != 0 {
							del(k)
						}
					}
					for range 20 {
						put(fmt.Sprintf("%s%03d", dirs[rng.IntN(3)], rng.IntN(1000)))
					}
				}
				for range rng.IntN(6) {
					switch k, ok := any(); {
					case rng.IntN(4) == 0 && ok:
						del(k)
					case rng.IntN(4) == 0 && ok:
						del(k)
						put(k) // created again: a held key deleted in between
					case rng.IntN(3) == 0 && ok:
						put(k)
					default:
						put(fmt.Sprintf("%s%03d", dirs[rng.IntN(3)], rng.IntN(1000)))
					}
				}
			}
			relist := func(step int) (changes bool, listed []watch.KeyRange) {
				rev, err := w.Relist(ctx, func(b watch.Batch) error {
					changes = changes || b.Since != 0
					listed = append(listed, b.Listed...)
					h.apply(b)
					return nil
				})
				testbed.Must(t, err, "re-list")
				if h.rev != rev {
					t.Fatalf("step %d: the batches end at revision %d, the re-list at %d", step, h.rev, rev)
				}
				return changes, listed
			}
			// etcdHolds is what the watcher reads of etcd at rev (0: now).
			etcdHolds := func(rev int64) map[string]string {
				want := map[string]string{}
				for _, d := range []string{"a/", "b/", "c/"} {
					if ranges != nil && d == "b/" {
						continue
					}
					resp, err := client.Get(ctx, "root/"+d, clientv3.WithPrefix(), clientv3.WithRev(rev))
					testbed.Must(t, err, "get")
					for _, kv := range resp.Kvs {
						want[string(kv.Key[len("root/"):])] = string(kv.Value)
					}
				}
				return want
			}
			check := func(step int) {
				if want := etcdHolds(h.rev); !maps.Equal(h.keys, want) {
					t.Fatalf("step %d: the consumer holds %d keys, etcd %d at revision %d:\nheld %v\nwant %v", step, len(h.keys), len(want), h.rev, h.keys, want)
				}
			}
			if changes, _ := relist(-1); changes {
				t.Fatal("a first listing read only changes")
			}
			check(-1)
			var read, ranged, whole int
			for step := range 40 {
				if rng.IntN(2) == 0 {
					// Changes the watch follows: it knows their creations and
					// deletions, so they never force a listing.
					reports := make(chan watch.Report)
					runCtx, stop := context.WithCancel(ctx)
					done := make(chan struct{})
					go func() { w.Run(runCtx, reports); close(done) }()
					connected := false
					for !connected {
						r := <-reports
						if r.Batch != nil {
							h.apply(*r.Batch)
						}
						connected = r.Status != nil && r.Status.Connected
					}
					change()
					// Until the consumer holds what etcd does (the ranges'
					// watches hand out their changes in any order).
					for want := etcdHolds(0); !maps.Equal(h.keys, want); {
						select {
						case r := <-reports:
							if r.Batch != nil {
								h.apply(*r.Batch)
							}
						case <-time.After(10 * time.Second):
							t.Fatalf("step %d: the watch did not hand out every change", step)
						}
					}
					clear(deleted) // the watch followed them
					stop()
					go func() {
						for range reports {
						}
					}()
					<-done
					close(reports)
				}
				// Changes the watch misses, then a compaction now and then.
				change()
				if rng.IntN(3) == 0 {
					resp, err := client.Get(ctx, "x")
					testbed.Must(t, err, "revision")
					// Compacted already, when nothing was written since.
					if _, err = client.Compact(ctx, resp.Header.Revision); err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
						t.Fatal(err)
					}
				}
				changes, listed := relist(step)
				check(step)
				switch {
				case !changes && len(deleted) == 0:
					t.Fatalf("step %d: no held key deleted since the watcher knew the prefix, and the re-list listed it whole", step)
				case !changes:
					whole++
				case len(deleted) > 0 && len(listed) == 0:
					t.Fatalf("step %d: held keys deleted since the watcher knew the prefix (%v), and the re-list listed no range", step, slices.Sorted(maps.Keys(deleted)))
				case len(listed) > 0:
					ranged++
				default:
					read++
				}
				for _, r := range listed {
					if !slices.ContainsFunc(slices.Collect(maps.Keys(deleted)), r.Holds) {
						t.Fatalf("step %d: the re-list listed %v, which lost no held key (deleted: %v)", step, r, slices.Sorted(maps.Keys(deleted)))
					}
				}
				for k := range deleted {
					if changes && !slices.ContainsFunc(listed, func(r watch.KeyRange) bool { return r.Holds(k) }) {
						t.Fatalf("step %d: %s was deleted, and the re-list listed no range holding it: %v", step, k, listed)
					}
				}
				clear(deleted)
			}
			t.Logf("%d re-lists read only changes, %d also listed the intervals that lost a key, %d listed whole", read, ranged, whole)
			if ranged == 0 || read == 0 || whole == 0 {
				t.Fatal("the walk never re-listed both ways; change its seed")
			}
		})
	}
}

// TestARelistFromAnotherHistoryListsWhole: the client is pointed at another
// etcd holding the same keys, its revision past the watcher's, where one key
// has an older value written at a low revision. Nothing there was written
// since the watcher's revision, and every span counts as it did, but the
// history is another: the re-list must list the prefix whole.
func TestARelistFromAnotherHistoryListsWhole(t *testing.T) {
	a, b := startEtcd(t), startEtcd(t)
	ctx := testbed.Context(t, time.Minute)
	for _, c := range []*clientv3.Client{a, b} {
		for i := range 30 {
			_, err := c.Put(ctx, fmt.Sprintf("root/k%02d", i), "old")
			testbed.Must(t, err, "put")
		}
	}
	_, err := a.Put(ctx, "root/k07", "new")
	testbed.Must(t, err, "put")
	for range 100 {
		// b's revision past a's, with nothing written below the prefix.
		_, err := b.Put(ctx, "elsewhere", "x")
		testbed.Must(t, err, "put")
	}
	w := &watch.Watcher{Client: a, Prefix: "root", SplitEvery: 7}
	h := &heldKeys{keys: map[string]string{}}
	_, err = w.Relist(ctx, func(b watch.Batch) error { h.apply(b); return nil })
	testbed.Must(t, err, "listing")
	a.SetEndpoints(b.Endpoints()...)
	if snapshot := relistInto(t, ctx, w, h); !snapshot || h.keys["k07"] != "old" {
		t.Fatalf("re-listed from another etcd: listed whole %v, k07 %q", snapshot, h.keys["k07"])
	}
}

// TestARelistAfterARestoreListsWhole restores etcd from a snapshot, as its
// operators would: the same member and cluster, the snapshot's values, and
// (as etcdutl's --bump-revision does) a revision past the watcher's. Nothing
// was written below the prefix since the watcher's revision, every span
// counts as it did, and the raft term is the one it had; the re-list must
// list whole, and hold the snapshot's values.
func TestARelistAfterARestoreListsWhole(t *testing.T) {
	etcd, etcdctl := testbed.Binary(t, "ETCD_BIN", "etcd"), testbed.Binary(t, "ETCDCTL_BIN", "etcdctl")
	if a, b := minorVersion(t, etcd, "--version"), minorVersion(t, etcdctl, "version"); a != b {
		t.Skipf("etcdctl %s restores what etcd %s saves only at its own version", b, a)
	}
	dir := t.TempDir()
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", testbed.FreePort(t))
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", testbed.FreePort(t))
	start := func(data string) *testbed.Process {
		p := testbed.Start(t, &testbed.Process{Name: "etcd-" + data, Path: etcd, Log: filepath.Join(dir, data+".log"),
			Args: []string{"--name", "default", "--data-dir", filepath.Join(dir, data),
				"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
				"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
				"--initial-cluster", "default=" + peerURL, "--log-level", "warn"}})
		testbed.WaitHTTP(t, p, clientURL+"/health", 200, 30*time.Second)
		return p
	}
	first := start("first")
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{strings.TrimPrefix(clientURL, "http://")}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	testbed.Must(t, err, "client")
	defer client.Close()
	ctx := testbed.Context(t, time.Minute)
	write := func(value string) {
		for i := range 30 {
			_, err := client.Put(ctx, fmt.Sprintf("root/k%02d", i), value)
			testbed.Must(t, err, "put")
		}
	}
	write("old")
	snap := filepath.Join(dir, "snapshot.db")
	rc, err := client.Snapshot(ctx)
	testbed.Must(t, err, "snapshot")
	f, err := os.Create(snap)
	testbed.Must(t, err, "snapshot file")
	_, err = io.Copy(f, rc)
	testbed.Must(t, err, "snapshot")
	testbed.Must(t, f.Close(), "snapshot file")
	write("new")

	w := &watch.Watcher{Client: client, Prefix: "root", SplitEvery: 7}
	h := &heldKeys{keys: map[string]string{}}
	listed, err := w.Relist(ctx, func(b watch.Batch) error { h.apply(b); return nil })
	testbed.Must(t, err, "listing")

	first.Stop()
	restore := exec.Command(etcdctl, "snapshot", "restore", snap, "--data-dir", filepath.Join(dir, "restored"),
		"--name", "default", "--initial-cluster", "default="+peerURL, "--initial-advertise-peer-urls", peerURL)
	restore.Env = append(os.Environ(), "ETCDCTL_API=3")
	if out, err := restore.CombinedOutput(); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	start("restored")
	for rev := int64(0); rev <= listed; {
		// Past the watcher's revision, below no key it reads.
		resp, err := client.Put(ctx, "elsewhere", "x")
		testbed.Must(t, err, "put")
		rev = resp.Header.Revision
	}
	if snapshot := relistInto(t, ctx, w, h); !snapshot || h.keys["k07"] != "old" {
		t.Fatalf("re-listed from a restored etcd: listed whole %v, k07 %q", snapshot, h.keys["k07"])
	}
}

// relistInto re-lists into h and says whether it listed whole.
func relistInto(t *testing.T, ctx context.Context, w *watch.Watcher, h *heldKeys) (snapshot bool) {
	t.Helper()
	_, err := w.Relist(ctx, func(b watch.Batch) error {
		snapshot = snapshot || b.Snapshot
		h.apply(b)
		return nil
	})
	testbed.Must(t, err, "re-list")
	return snapshot
}

// minorVersion is the major.minor a binary of etcd's prints.
func minorVersion(t *testing.T, bin, arg string) string {
	out, err := exec.Command(bin, arg).Output()
	if err != nil {
		t.Fatalf("%s %s: %v", bin, arg, err)
	}
	for _, f := range strings.Fields(string(out)) {
		if parts := strings.Split(f, "."); len(parts) == 3 && parts[0] >= "3" && len(parts[0]) == 1 {
			return parts[0] + "." + parts[1]
		}
	}
	t.Fatalf("no version in %q", out)
	return ""
}

// TestARelistAfterAnUnfindableKeyListsWhole: a consumer that cannot find
// some key by its text (the engine rebuilds a key's text from its object,
// and a key written in another case is not that text) cannot apply the
// listing of an interval, which tells a deleted key only by its absence.
// Once such a key was handed out, a re-list after a deletion lists whole;
// without one, it lists the interval that lost the key.
func TestARelistAfterAnUnfindableKeyListsWhole(t *testing.T) {
	// The key the consumer cannot find: none, in the listing, or written
	// while the watch was lost (read by the re-list itself).
	for _, odd := range []string{"", "listed", "meanwhile"} {
		t.Run("odd="+odd, func(t *testing.T) {
			client := startEtcd(t)
			ctx := testbed.Context(t, time.Minute)
			for i := range 30 {
				_, err := client.Put(ctx, fmt.Sprintf("root/k%02d", i), "v")
				testbed.Must(t, err, "put")
			}
			writeOdd := func() {
				_, err := client.Put(ctx, "root/K99", "v")
				testbed.Must(t, err, "put")
			}
			if odd == "listed" {
				writeOdd()
			}
			w := &watch.Watcher{Client: client, Prefix: "root", SplitEvery: 7,
				Findable: func(rel string) bool { return !strings.HasPrefix(rel, "K") }}
			h := &heldKeys{keys: map[string]string{}}
			_, err := w.Relist(ctx, func(b watch.Batch) error { h.apply(b); return nil })
			testbed.Must(t, err, "listing")
			if odd == "meanwhile" {
				writeOdd()
			}
			_, err = client.Delete(ctx, "root/k20")
			testbed.Must(t, err, "delete")
			var listed []watch.KeyRange
			_, err = w.Relist(ctx, func(b watch.Batch) error {
				listed = append(listed, b.Listed...)
				return nil
			})
			testbed.Must(t, err, "re-list")
			if whole := listed == nil; whole != (odd != "") || (odd == "" && len(listed) != 1) {
				t.Fatalf("with a key the consumer cannot find: %q; the re-list listed %v (nil: whole)", odd, listed)
			}
		})
	}
}
