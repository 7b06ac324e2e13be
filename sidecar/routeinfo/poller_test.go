package routeinfo_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/internal/coordinator"
	"github.com/traefik-sd/traefik-sd/sidecar/routeinfo"
	"github.com/traefik-sd/traefik-sd/sidecar/source"
)

// TestKickedCircuitsAreAskedOneByOne: the whole list first and every
// interval, and in between only the circuits etcd changed, each with GET
// /api/circuit/{id}; a circuit the coordinator no longer has answers 404
// and is left out; more than MaxCircuits, or a kick naming none, ask for
// the list.
func TestKickedCircuitsAreAskedOneByOne(t *testing.T) {
	api := &coordinator.API{Token: "secret", WorkerID: "w-1"}
	a := coordinator.Circuit{ID: "a", App: "app", Routes: []coordinator.Route{{RouteID: "ra", SessionID: "sa", Host: "10.0.0.1", Port: 8000}}}
	b := coordinator.Circuit{ID: "b", App: "app", Routes: []coordinator.Route{{RouteID: "rb", SessionID: "sb", Host: "10.0.0.2", Port: 8000}}}
	api.Set(a, b)
	srv := httptest.NewServer(api)
	defer srv.Close()
	client := &routeinfo.Client{URL: srv.URL, WorkerID: "w-1", HTTP: srv.Client()}
	client.SetToken("secret")
	p := &routeinfo.Poller{Client: client, Interval: time.Hour, Settle: time.Millisecond, MaxCircuits: 2}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan routeinfo.Answer)
	go p.Run(ctx, out)
	next := func(what string) routeinfo.Answer {
		t.Helper()
		select {
		case ans := <-out:
			if ans.Err != nil {
				t.Fatalf("%s: %v", what, ans.Err)
			}
			return ans
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no answer", what)
		}
		return routeinfo.Answer{}
	}

	first := next("the first round")
	if first.Circuits != nil || first.Table.Len() != 2 || api.AskedOne() != 0 {
		t.Fatalf("the first round is the whole list: circuits %v, %d routes, %d asked one by one", first.Circuits, first.Table.Len(), api.AskedOne())
	}

	moved := a
	moved.Routes = []coordinator.Route{{RouteID: "ra2", SessionID: "sa2", Host: "10.0.0.9", Port: 8000}}
	api.Set(moved) // b is gone
	asked := api.Asked()
	p.Kick("a", "b")
	one := next("a kick about a and b")
	if fmt.Sprint(one.Circuits) != "[a b]" || api.AskedOne() != 2 || api.Asked() != asked+2 {
		t.Fatalf("asked %v, %d one by one, %d requests in all (want [a b], 2, 2)", one.Circuits, api.AskedOne(), api.Asked()-asked)
	}
	if ids, ok := one.Table.Lookup("a", "10.0.0.9:8000"); !ok || ids.SessionID != "sa2" {
		t.Fatalf("a's answer: %+v %v", ids, ok)
	}
	if one.Table.Len() != 1 || len(one.Table.Servers("b")) != 0 {
		t.Fatalf("b, gone from the coordinator, is in the answer: %d routes", one.Table.Len())
	}

	p.Kick("a", "b", "c")
	if many := next("a kick about more than MaxCircuits"); many.Circuits != nil {
		t.Fatalf("three circuits over a bound of two asked one by one: %v", many.Circuits)
	}
	p.Kick()
	if all := next("a kick naming none"); all.Circuits != nil {
		t.Fatalf("a kick naming no circuit asked about %v", all.Circuits)
	}
}

// TestACircuitAnswerAboutAnotherIsRefused: the answer must be the circuit
// asked about.
func TestACircuitAnswerAboutAnotherIsRefused(t *testing.T) {
	tb := source.NewRouteTable()
	err := routeinfo.DecodeCircuit(tb, "a", []byte(`{"id":"b","route_info":[]}`))
	if err == nil || !strings.Contains(err.Error(), `circuit a: the answer is about circuit "b"`) {
		t.Fatalf("err = %v", err)
	}
}
