package routeinfo_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"testing"

	"github.com/traefik-sd/traefik-sd/sidecar/routeinfo"
	"github.com/traefik-sd/traefik-sd/sidecar/source"
)

// wholeDecode is the oracle: the answer decoded whole by encoding/json, as
// Decode did before it read the answer as it arrives, joined by the same
// rules.
func wholeDecode(body []byte) (*source.RouteTable, error) {
	type route struct {
		RouteID        *string `json:"route_id"`
		RouteIDAlias   *string `json:"route-id"`
		SessionID      *string `json:"session_id"`
		SessionIDAlias *string `json:"session-id"`
		KernelHost     *string `json:"kernel_host"`
		KernelPort     int     `json:"kernel_port"`
	}
	var answer struct {
		Circuits *[]struct {
			ID         string  `json:"id"`
			App        string  `json:"app"`
			EndpointID *string `json:"endpoint_id"`
			RouteInfo  []route `json:"route_info"`
		} `json:"circuits"`
	}
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&answer); err != nil {
		return nil, err
	}
	if answer.Circuits == nil {
		return nil, fmt.Errorf("no circuits")
	}
	or := func(a, b *string) string {
		if a != nil {
			return *a
		}
		if b != nil {
			return *b
		}
		return ""
	}
	t := source.NewRouteTable()
	for i, c := range *answer.Circuits {
		if c.ID == "" {
			return nil, fmt.Errorf("circuits[%d].id", i)
		}
		for j, r := range c.RouteInfo {
			if r.KernelHost == nil || *r.KernelHost == "" || r.KernelPort < 1 || r.KernelPort > 65535 {
				t.Skip(fmt.Sprint(c.ID, j))
				continue
			}
			hp := net.JoinHostPort(*r.KernelHost, strconv.Itoa(r.KernelPort))
			t.Add(c.ID, hp, source.RouteIDs{SessionID: or(r.SessionID, r.SessionIDAlias), RouteID: or(r.RouteID, r.RouteIDAlias),
				EndpointID: or(c.EndpointID, nil), App: c.App})
			t.AddServer(c.ID, "http://"+hp+"/")
		}
	}
	return t, nil
}

// FuzzDecode: reading the answer as it arrives gives the table decoding it
// whole gives, and fails where that fails.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"circuits": []}`,
		`{"circuits": [{"id": "c1", "app": "a", "endpoint_id": "e", "route_info": [{"route_id": "r", "session_id": "s", "kernel_host": "10.0.0.1", "kernel_port": 8000}]}]}`,
		`{"Circuits": [{"id": "c1", "route_info": [{"kernel_host": null, "kernel_port": 8000}, {"kernel_host": "h", "kernel_port": 0}]}], "x": {"y": [1, 2]}}`,
		`{"circuits": [{"id": "a"}], "circuits": null}`,
		`{"circuits": null, "CIRCUITS": [{"id": "b", "route_info": [{"session-id": "s", "route-id": "r", "kernel_host": "::1", "kernel_port": 1}]}]}`,
		`{"circuits": [{"route_info": []}]}`,
		`{"circuits": [null]}`,
		`{"circuits": {}}`,
		`{"circuits": [{"id": "c", "route_info": [{"kernel_host": "h", "kernel_port": "80"}]}]}`,
		`{"error": "not found"}`,
		`[]`, `null`, `not json`, `{"circuits": [] } trailing`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := routeinfo.Decode(body)
		want, werr := wholeDecode(body)
		if (err == nil) != (werr == nil) {
			t.Fatalf("%q: streaming %v, whole %v", body, err, werr)
		}
		if err != nil {
			return
		}
		if !got.Equal(want) || len(got.Skipped()) != len(want.Skipped()) {
			t.Fatalf("%q: streaming and whole differ in %v (skipped %d and %d)", body, got.ChangedCircuits(want), len(got.Skipped()), len(want.Skipped()))
		}
	})
}
