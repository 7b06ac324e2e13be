package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/traefik-sd/traefik-sd/e2e/stack"
	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Why Traefik v3.6.12's etcd provider stops following at some size.
//
// traefik/traefik v3.6.12, pkg/provider/kv/kv.go, (*Provider).watchKv,
// lines 97-121: for every value received from kvClient.WatchTree (line
// 106) it calls buildConfiguration (line 111), whose line 135 is
// kvClient.List(ctx, p.RootKey, nil): the whole tree, decoded again into a
// dynamic.Configuration (kv.Decode, line 151), whatever the value said.
//
// kvtools/etcdv3 v1.0.3, etcd.go, (*Store).WatchTree, lines 244-262: one
// value on that channel per etcd watch response (`for resp := range
// watchCh`, then `respCh <- list` with the response's events), not per
// event. So what Traefik pays one full listing for is a watch response: one
// etcd revision for a watcher that keeps up, and the coordinator writes a
// circuit in one transaction, deletes it in one revision per prefix.
//
// (*Store).list, lines 440-451, is the listing: with nil options a
// linearizable range over the root key as a bare prefix (no trailing
// slash), sorted by key descending, under a 5 s timeout
// (etcdDefaultTimeout, line 23); a listing that takes longer fails
// buildConfiguration, which ends the watch, and watchKv starts over with
// backoff.
//
// pkg/config/kv/kv_node.go, DecodeToNode and decodeToNode, lines 15-66:
// each key is placed in the node tree by finding each of its path segments
// among the children so far with containsNode (line 54), a linear scan
// with strings.EqualFold (lines 68-75). With n circuits, http/routers has
// n children and http/middlewares several per circuit, and every key of
// theirs scans them: the decode grows with the square of the tree and,
// past a few hundred circuits, costs far more than etcd's range.
//
// pkg/provider/aggregator/aggregator.go, maybeThrottledProvide, lines
// 44-58: the provider hands its configurations to a ring channel, so its
// watch loop never waits for a reload: it goes as fast as one listing and
// one decode per response allow, and a write arriving behind k responses
// waits k of them.

// ceilingWait bounds each wait: a size that has not followed a write by
// then has answered the question, and the whole ceiling stays minutes long.
const ceilingWait = 60 * time.Second

// ceilingFollows is what "Traefik follows" means in the README: a new
// router in its API within this much of the write.
const ceilingFollows = 10 * time.Second

// ceiling measures, at each size (circuits loaded before Traefik starts,
// as startPublishBench does), how long a newly written circuit takes to
// appear in Traefik's API and in the sidecar's targets (medians over
// rounds, after one write not counted that lets Traefik finish its
// start-up listings; each round writes one more circuit and deletes none,
// so each write is the only response Traefik has to process), what one
// listing of the tree as Traefik reads it costs etcd, how many watch
// responses one coordinator Put produces, and how long one turn of
// Traefik's provider loop (listing and decoding) takes. It returns the
// largest size Traefik followed within ceilingFollows, every smaller size
// included, or 0.
//
// Sizes are tried from the smallest. A size is run through Traefik only if
// it could finish within ceilingWait: following a write costs at least in
// proportion to the tree (etcd's range, kvtools' copy and Traefik's reload
// go over every key, and Traefik's decode grows faster still), so after
// size N took d, size M is predicted at no less than d*M/N, and after a
// timeout d is ceilingWait. A size past that prediction would spend
// ceilingWait per round to learn what the prediction already says; its etcd
// figures, which the proposal to Traefik quotes, are still measured on etcd
// alone, and its line has no Traefik figures (no api-ms, published-ms,
// provider-ms or timeouts) rather than invented ones.
func ceiling(t testbed.T, dir string, sizes []int, rounds int) (largestFollowed int) {
	sizes = slices.Sorted(slices.Values(sizes))
	lastN, lastTook := 0, time.Duration(0)
	stillFollowing := true
	for _, n := range sizes {
		name := fmt.Sprintf("BenchmarkTraefikCeiling/circuits=%d", n)
		work := filepath.Join(dir, "ceiling-"+strconv.Itoa(n))
		if lastN > 0 {
			if predicted := lastTook * time.Duration(n) / time.Duration(lastN); predicted > ceilingWait {
				t.Logf("ceiling: %d circuits not run through Traefik: %d took %v, so %d would take about %v, past the %v wait",
					n, lastN, lastTook.Round(time.Millisecond), n, predicted.Round(time.Second), ceilingWait)
				cost := etcdOnly(t, work, n)
				fmt.Printf("%s\t1\t%.1f etcd-list-ms\t%d watch-events\n", name, millis(cost.list), cost.putResponses)
				continue
			}
		}

		var cost etcdCost
		b := startPublishBench(t, work, n, ceilingWait, func(w *coordinator.Writer) error {
			var err error
			cost, err = measureEtcd(t, w, n)
			return err
		})
		warmShown, warmPublished := b.create(benchCircuit(n + rounds))
		t.Logf("ceiling: %d circuits: the write not counted: api %v, published %v", n, warmShown.Round(time.Millisecond), warmPublished.Round(time.Millisecond))
		var shown, published []time.Duration
		for r := 0; r < rounds && b.timeouts == 0; r++ {
			s, p := b.create(benchCircuit(n + r))
			shown, published = append(shown, s), append(published, p)
		}
		if len(shown) == 0 {
			shown, published = []time.Duration{warmShown}, []time.Duration{warmPublished}
		}
		t.Logf("ceiling: %d circuits: api %v, published %v", n, shown, published)
		turn, turned := providerTurn(b, ceilingWait)
		// Before stopping: a stopped provider logs its cancelled watch.
		if errs, first := providerErrors(filepath.Join(work, "traefik.log")); errs > 0 {
			t.Logf("ceiling: Traefik logged %d provider errors at %d circuits, the first: %s", errs, n, first)
		}
		b.stop()
		api, pub := medianOf(shown), medianOf(published)
		if !turned {
			t.Logf("ceiling: %d circuits: one turn of Traefik's provider took more than %v", n, turn.Round(time.Second))
			b.timeouts++
		}
		// watch-events counts watch responses: kvtools' events, each one
		// full turn of Traefik's provider.
		fmt.Printf("%s\t1\t%.1f api-ms\t%.1f published-ms\t%.1f etcd-list-ms\t%d watch-events\t%d timeouts\t%.1f provider-ms\n",
			name, millis(api), millis(pub), millis(cost.list), cost.putResponses, b.timeouts, millis(turn))

		stillFollowing = stillFollowing && b.timeouts == 0 && api <= ceilingFollows
		if stillFollowing {
			largestFollowed = n
		}
		lastN, lastTook = n, api
		if b.timeouts > 0 {
			lastTook = ceilingWait
		}
	}
	return largestFollowed
}

// providerTurn measures one turn of Traefik's provider loop (the listing
// and the decoding one watch response costs) from etcd's side: it writes
// three keys outside what Traefik decodes (kv.Decode keeps http, tcp, udp
// and tls), each its own revision and so its own watch response, and times
// etcd's completed Range requests, which only Traefik's provider makes
// while nothing else writes (the sidecar reads nothing on a change, the
// coordinator is idle). Busy or idle when the keys arrive, the provider
// starts its next listing right after decoding the last, so the gap
// between two completed ranges is one turn. It gives up after limit,
// returning what it waited and false; the caller counts that as a timeout.
func providerTurn(b *publishBench, limit time.Duration) (time.Duration, bool) {
	ctx := context.Background()
	metrics := "http://" + b.s.Etcd.Endpoint + "/metrics"
	before := ranges(ctx, metrics)
	for i := range 3 {
		_, err := b.s.Client.Put(ctx, fmt.Sprintf("%s/ceiling-probe/%d", b.s.Coord.RootKey(), i), "x")
		testbed.Must(b.t, err, "a probe key")
	}
	start := time.Now()
	var first time.Time
	firstCount := 0
	for {
		waited := time.Since(start)
		got := ranges(ctx, metrics)
		if got > before && first.IsZero() {
			first, firstCount = time.Now(), got
		}
		if got >= before+3 {
			if got == firstCount {
				// All three between two polls: turns shorter than a poll.
				return time.Since(start) / 3, true
			}
			return time.Since(first) / time.Duration(got-firstCount), true
		}
		if waited > limit {
			if got > firstCount && firstCount > 0 {
				return time.Since(first) / time.Duration(got-firstCount), true
			}
			return waited, false
		}
		time.Sleep(min(max(5*time.Millisecond, waited/100), 100*time.Millisecond))
	}
}

// ranges is how many Range requests etcd has answered, whatever their
// outcome (a listing past kvtools' timeout is a turn too).
func ranges(ctx context.Context, metricsURL string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "grpc_server_handled_total{") && strings.Contains(line, `grpc_method="Range"`) {
			if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
				n += int(v)
			}
		}
	}
	return n
}

// etcdCost is what n circuits cost etcd, and so Traefik's provider, per
// watch response.
type etcdCost struct {
	list         time.Duration // one listing as kvtools does it for Traefik (median)
	keys, bytes  int           // what that listing returns
	putResponses int           // watch responses to one coordinator Put of one circuit
	putEvents    int           // the events in them
	delResponses int           // watch responses to that circuit's deletion
}

// measureEtcd measures etcdCost on w's tree of n circuits; it writes and
// deletes one more circuit, before Traefik runs, so Traefik never sees it.
func measureEtcd(t testbed.T, w *coordinator.Writer, n int) (etcdCost, error) {
	ctx := context.Background()
	root := w.RootKey()
	var c etcdCost
	var lists []time.Duration
	for range 5 {
		d, keys, bytes, err := listAsTraefik(ctx, w.Client, root)
		if err != nil {
			return c, err
		}
		lists = append(lists, d)
		c.keys, c.bytes = keys, bytes
	}
	c.list = medianOf(lists)

	probe := benchCircuit(n)
	var err error
	if c.putResponses, c.putEvents, err = watchResponses(ctx, w.Client, root, func() error { return w.Put(ctx, probe) }); err != nil {
		return c, err
	}
	if c.delResponses, _, err = watchResponses(ctx, w.Client, root, func() error { return w.Delete(ctx, probe.ID) }); err != nil {
		return c, err
	}
	t.Logf("ceiling: %d circuits: one listing as Traefik's provider does it reads %d keys (%.1f MB) in %v (median of %d); "+
		"one circuit's Put is %d watch responses (%d events), its deletion %d",
		n, c.keys, float64(c.bytes)/1e6, c.list.Round(time.Millisecond), len(lists), c.putResponses, c.putEvents, c.delResponses)
	if c.list > 5*time.Second {
		t.Logf("ceiling: at %d circuits a listing takes longer than kvtools' 5 s timeout: Traefik's provider fails on every watch response", n)
	}
	return c, nil
}

// listAsTraefik reads the tree under root exactly as kvtools' (*Store).list
// does with the nil options Traefik passes: linearizable, root as a bare
// prefix, sorted by key descending (etcd sorts the whole range in memory
// for that order).
func listAsTraefik(ctx context.Context, client *clientv3.Client, root string) (took time.Duration, keys, bytes int, err error) {
	start := time.Now()
	resp, err := client.Get(ctx, strings.TrimPrefix(root, "/"), clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend))
	took = time.Since(start)
	if err != nil {
		return took, 0, 0, err
	}
	for _, kv := range resp.Kvs {
		bytes += len(kv.Key) + len(kv.Value)
	}
	return took, len(resp.Kvs), bytes, nil
}

// watchResponses runs write while watching root as kvtools watches it
// (the bare prefix), and counts the watch responses with events, and those
// events, up to the revision write left etcd at. Responses are what
// Traefik re-lists on.
func watchResponses(ctx context.Context, client *clientv3.Client, root string, write func() error) (responses, events int, err error) {
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	prefix := strings.TrimPrefix(root, "/")
	watch := client.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	if created, ok := <-watch; !ok || !created.Created {
		return 0, 0, errors.New("the watch was not created")
	}
	if err := write(); err != nil {
		return 0, 0, err
	}
	// Any read's header carries the store's revision; an exact key costs
	// etcd nothing to range over.
	head, err := client.Get(ctx, prefix)
	if err != nil {
		return 0, 0, err
	}
	for seen := int64(0); seen < head.Header.Revision; {
		resp, ok := <-watch
		if !ok {
			return responses, events, fmt.Errorf("watch ended before revision %d: %v", head.Header.Revision, wctx.Err())
		}
		if err := resp.Err(); err != nil {
			return responses, events, err
		}
		if len(resp.Events) == 0 {
			continue
		}
		responses++
		events += len(resp.Events)
		seen = resp.Events[len(resp.Events)-1].Kv.ModRevision
	}
	return responses, events, nil
}

// etcdOnly measures etcdCost at n circuits on an etcd of its own, with the
// coordinator configured as stack.Start configures it, and nothing else.
func etcdOnly(t testbed.T, work string, n int) etcdCost {
	testbed.Must(t, os.MkdirAll(work, 0o755), "work dir")
	e := testbed.StartEtcd(t, work)
	defer e.Stop()
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	testbed.Must(t, err, "etcd client")
	defer client.Close()
	w := &coordinator.Writer{Client: client, Namespace: stack.Namespace, Authority: stack.Authority, WorkerID: stack.WorkerID,
		UnchainAppProxyPlugins: true, SD: &coordinator.TraefikSD{SidecarURL: "http://127.0.0.1:" + strconv.Itoa(testbed.FreePort(t))}}
	circuits := make([]coordinator.Circuit, n)
	for i := range circuits {
		circuits[i] = benchCircuit(i)
	}
	testbed.Must(t, w.BulkLoad(context.Background(), circuits), "loading %d circuits", n)
	cost, err := measureEtcd(t, w, n)
	testbed.Must(t, err, "measuring etcd at %d circuits", n)
	return cost
}

// providerErrors counts the lines of Traefik's log where its providers
// failed (a listing past kvtools' timeout shows up here), and returns the
// first.
func providerErrors(log string) (n int, first string) {
	f, err := os.Open(log)
	if err != nil {
		return 0, ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, "Provider error") || strings.Contains(line, "Cannot retrieve data") ||
			strings.Contains(line, "Cannot build the configuration") {
			if n == 0 {
				first = line
			}
			n++
		}
	}
	return n, first
}

func medianOf(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(ds))
	return s[len(s)/2]
}
