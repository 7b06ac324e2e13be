package interpreted_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/traefik/yaegi/interp"
)

// TestNewOnAReloadAllocatesLittleUnderYaegi holds New's common case, a
// router rebuilt on a reload with a valid configuration and the default
// intervals, to its small path under the interpreter. Yaegi allocates a
// slot for every value a called function's body could make, run or not,
// so New calling the checks that explain a refusal cost some 270
// allocations per router (measured before the split), where its own path
// costs about 190; with ten thousand routers a reload, that is what the
// plugin adds to Traefik's collector. The bound sits between the two.
func TestNewOnAReloadAllocatesLittleUnderYaegi(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { rw.WriteHeader(http.StatusNoContent) }))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fnNew, fnCreate := loadPlugin(t, interp.Options{})
	cfg := fnCreate.Call(nil)[0]
	cfg.Elem().FieldByName("CircuitID").SetString("c-1")
	cfg.Elem().FieldByName("WorkerAuthority").SetString("worker-1")
	cfg.Elem().FieldByName("SidecarURL").SetString(srv.URL)
	args := []reflect.Value{reflect.ValueOf(ctx), reflect.ValueOf(http.NotFoundHandler()), cfg, reflect.ValueOf("bai_sd_c-1@etcd")}
	allocs := testing.AllocsPerRun(2000, func() {
		if e := fnNew.Call(args)[1].Interface(); e != nil {
			t.Fatal(e)
		}
	})
	t.Logf("New: %.0f allocations a call", allocs)
	if allocs > 230 {
		t.Errorf("New allocates %.0f times a call under Yaegi; its common path should stay under 230", allocs)
	}
}
