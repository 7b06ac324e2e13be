package daemon_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/internal/testbed"
	"github.com/traefik-sd/traefik-sd/sidecar/config"
	"github.com/traefik/paerser/types"
)

// TestNoSecretReachesTheStatusPageOrTheLog puts a secret marker wherever a
// value can reach an error: a server URL's password and a mistyped
// metricsPort in etcd, a URL with user:password@ and a password: value in
// the error Traefik gives a router it disabled, an error answer of
// Traefik's API, and the password of --traefik.apiURL. The status page
// and the log name each problem (the key, the field, Traefik's words with
// the secret redacted) and never hold the marker.
func TestNoSecretReachesTheStatusPageOrTheLog(t *testing.T) {
	const marker = "s3cr3t"
	// Traefik's API behind a URL with a password: it answers 503 (with a
	// secret in its body) until the fake Traefik is there to answer.
	var fake atomic.Pointer[fakeTraefik]
	api := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		if f := fake.Load(); f != nil {
			f.ServeHTTP(rw, req)
			return
		}
		http.Error(rw, `{"message":"starting; token=`+marker+`"}`, http.StatusServiceUnavailable)
	}))
	defer api.Close()
	log := &testbed.LogBuffer{}
	e := startEnvLogging(t, "worker-secret", func(cfg *config.Configuration) {
		cfg.Traefik.APIURL = strings.Replace(api.URL, "http://", "http://admin:"+marker+"@", 1)
		cfg.Plugin.StartGrace = types.Duration(time.Second)
	}, log)
	fake.Store(e.traefik)
	ctx := testbed.Context(t, 2*time.Minute)

	root := "traefik/worker_worker-secret/http/"
	for key, value := range map[string]string{
		"services/bai_service_broken/loadBalancer/servers/0/url":  "http://u:" + marker + "@10.0.0.1:70000/",
		"middlewares/bai_sd_broken/plugin/traefik-sd/circuitId":   "c-broken",
		"middlewares/bai_sd_broken/plugin/traefik-sd/metricsPort": marker,
	} {
		_, err := e.client.Put(ctx, root+key, value)
		testbed.Must(t, err, "put %s", key)
	}
	testbed.Must(t, e.coord.Put(ctx, interactive()), "create")
	router := "bai_router_" + interactive().ID + "@etcd"
	e.traefik.disable(router, `middleware "auth@file": Get "http://admin:`+marker+`@10.0.0.9/verify": refused; password: "`+marker+`"`)

	var page string
	testbed.Eventually(t, 30*time.Second, "the status page shows both broken objects and Traefik's error", func() (bool, string) {
		_, page = get(t, http.DefaultClient, e.base+"/", "")
		return strings.Contains(page, "bai_service_broken") && strings.Contains(page, "metricsPort: not an integer") &&
			strings.Contains(page, "10.0.0.9/verify"), page
	})
	testbed.Eventually(t, 30*time.Second, "the log tells the same", func() (bool, string) {
		return log.Count("10.0.0.9/verify") > 0 && log.Count("metricsPort: not an integer") > 0 &&
			log.Count("port out of range") > 0 && log.Count("Traefik's API answers again") > 0, log.Lines("")
	})
	if strings.Contains(page, marker) {
		t.Errorf("the status page holds the secret:\n%s", page)
	}
	if lines := log.Lines(marker); lines != "" {
		t.Errorf("the log holds the secret:\n%s", lines)
	}
	if !strings.Contains(page, "admin:xxxxx@10.0.0.9") || log.Count("admin:xxxxx@10.0.0.9") == 0 {
		t.Errorf("Traefik's error is not shown redacted; the log:\n%s", log.Lines("10.0.0.9"))
	}
	if n := log.Count("admin:xxxxx@127.0.0.1"); n == 0 {
		t.Errorf("the log does not name --traefik.apiURL, redacted:\n%s", log.Lines("traefik"))
	}
}
