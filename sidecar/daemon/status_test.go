package daemon_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/traefik-sd/traefik-sd/internal/testbed"
)

// TestStatusPageInAHeadlessChromium opens the status page in a real
// headless Chromium (Debian's), on a phone-sized screen, behind the read
// token: it shows a new circuit with its targets, drops a deleted one, and
// fits the screen's width. A screenshot is left in the test's directory.
func TestStatusPageInAHeadlessChromium(t *testing.T) {
	e := startEnv(t, "worker-page")
	ctx := testbed.Context(t, 2*time.Minute)
	cfg := besideConfig(e, "worker-page", "node-b")
	cfg.Server.ReadToken = "reader"
	base, _ := e.startBeside(t, cfg)
	testbed.Must(t, e.coord.Put(ctx, interactive(), inference()), "create")

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(testbed.Binary(t, "CHROMIUM_BIN", "chromium")),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.Headless,
		chromedp.UserDataDir(t.TempDir()))
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	page := base + "/"
	testbed.Must(t, chromedp.Do(browser, chromedp.EmulateViewport(390, 844)), "starting Chromium")
	_, err := chromedp.Call(browser, network.SetExtraHTTPHeaders,
		network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": "Bearer reader"}})
	testbed.Must(t, err, "the read token on every request")

	has := func(id string) (bool, string) {
		if err := chromedp.Do(browser, chromedp.Navigate(page)); err != nil {
			return false, err.Error()
		}
		present, err := chromedp.Run(browser, chromedp.Evaluate[bool](fmt.Sprintf(`document.getElementById("circuit-%s") !== null`, id)))
		if err != nil {
			return false, err.Error()
		}
		text, err := chromedp.Run(browser, chromedp.Evaluate[string](`document.body.innerText`))
		if err != nil {
			return false, err.Error()
		}
		return present, text
	}
	testbed.Eventually(t, 30*time.Second, "the page shows both circuits", func() (bool, string) {
		a, text := has(interactive().ID)
		b, _ := has(inference().ID)
		return a && b && strings.Contains(text, "10.0.1.21:8000") && strings.Contains(text, "session_id=sess-1"), text
	})
	fits, err := chromedp.Run(browser, chromedp.Evaluate[bool](`document.documentElement.scrollWidth <= window.innerWidth + 1`))
	testbed.Must(t, err, "width")
	if !fits {
		t.Error("the page is wider than a 390-pixel phone screen")
	}
	// Under its Content-Security-Policy (no script, no outside asset, no
	// framing) the page keeps its own inline style.
	req, _ := http.NewRequest(http.MethodGet, page, nil)
	req.Header.Set("Authorization", "Bearer reader")
	resp, err := http.DefaultClient.Do(req)
	testbed.Must(t, err, "GET the page")
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'none';") {
		t.Errorf("the page's Content-Security-Policy: %q", csp)
	}
	display, err := chromedp.Run(browser, chromedp.Evaluate[string](`getComputedStyle(document.querySelector(".facts")).display`))
	testbed.Must(t, err, "the page's style")
	if display != "grid" {
		t.Errorf("the page's inline <style> is not applied: .facts displays %q, want grid", display)
	}
	shot, err := chromedp.Run(browser, chromedp.FullScreenshot(100)) // 100: PNG
	testbed.Must(t, err, "screenshot")
	path := filepath.Join(t.TempDir(), "status-page.png")
	testbed.Must(t, os.WriteFile(path, shot, 0o644), "writing the screenshot")
	t.Logf("status page screenshot: %s (%d bytes)", path, len(shot))

	testbed.Must(t, e.coord.Delete(ctx, inference().ID), "delete")
	testbed.Eventually(t, 30*time.Second, "the deleted circuit leaves the page", func() (bool, string) {
		gone, text := has(inference().ID)
		return !gone && strings.Contains(text, interactive().ID), text
	})

	// Without the token, the page is refused like /v1/targets.
	if code, _ := get(t, http.DefaultClient, page, ""); code != 401 {
		t.Errorf("the page without the read token: %d, want 401", code)
	}
}
