package scrape_test

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/traefik-sd/traefik-sd/internal/fixture"
	"github.com/traefik-sd/traefik-sd/sidecar/scrape"
)

func read(t testing.TB, name string) []byte {
	b, err := os.ReadFile(fixture.Path("traefik-metrics/" + name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseRealTraefikOutput(t *testing.T) {
	res := scrape.NewParser().Parse(read(t, "traefik-v3.6.12.txt"))
	if res.Broken != 0 {
		t.Errorf("a real capture has %d broken lines: %s", res.Broken, res.FirstError)
	}
	if res.Known != 2 {
		t.Errorf("servers known: got %d, want 2", res.Known)
	}
	if res.DownCount() != 1 || !res.Down("s1@file", "http://127.0.0.1:18932/") {
		t.Errorf("down servers: %v", res.DownServers())
	}
	if res.LastReloadSuccess != 1.795587414e9 {
		t.Errorf("last reload success: %v", res.LastReloadSuccess)
	}
}

func TestParseSkipsBrokenLinesAndKeepsTheRest(t *testing.T) {
	res := scrape.NewParser().Parse(read(t, "broken.txt"))
	want := `esc"aped@etcd http://10.0.0.6:80/` + "\n" + "good@etcd http://10.0.0.1:80/"
	if got := strings.Join(res.DownServers(), "\n"); got != want {
		t.Errorf("down: got\n%s\nwant\n%s", got, want)
	}
	if res.Broken != 6 {
		t.Errorf("broken lines: got %d, want 6 (first: %s)", res.Broken, res.FirstError)
	}
	if !strings.HasPrefix(res.FirstError, "line 4: ") || !strings.Contains(res.FirstError, "unterminated") {
		t.Errorf("first error should name line 4 and what was wrong: %q", res.FirstError)
	}
	if res.LastReloadFailure != 1.7e9 {
		t.Errorf("last reload failure: %v", res.LastReloadFailure)
	}
}

func TestParserForgetsServersThatAreGone(t *testing.T) {
	p := scrape.NewParser()
	first := p.Parse([]byte("traefik_service_server_up{service=\"a@etcd\",url=\"http://x/\"} 0\n"))
	second := p.Parse([]byte("traefik_service_server_up{service=\"b@etcd\",url=\"http://y/\"} 1\n"))
	if first.DownCount() != 1 || second.DownCount() != 0 || second.Known != 1 {
		t.Errorf("first %v, second %v (known %d)", first.DownServers(), second.DownServers(), second.Known)
	}
}

// FuzzParse checks the parser against an oracle, expfmt's text parser:
// where expfmt reads the whole body, the servers the parser finds down
// (a traefik_service_server_up sample below 1, or NaN) are exactly those
// expfmt's samples say, and no line is broken. ParseReader, the path the
// scraper takes, must say the same as Parse on every input.
func FuzzParse(f *testing.F) {
	f.Add(read(f, "traefik-v3.6.12.txt"))
	f.Add(read(f, "broken.txt"))
	f.Add([]byte("traefik_service_server_up{service=\"a\\\\\",url=\"\\n\"} NaN\n"))
	f.Add([]byte("x{"))
	f.Add([]byte("traefik_service_server_up{service=\"a@etcd\",url=\"http://x/\"} 0.5 1700000000000\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		res := scrape.NewParser().Parse(body)
		if res.Broken > res.Samples || res.Known > res.Samples || res.DownCount() > res.Known {
			t.Fatalf("counts inconsistent: samples %d broken %d known %d down %d", res.Samples, res.Broken, res.Known, res.DownCount())
		}
		if res.Broken > 0 && res.FirstError == "" {
			t.Fatal("broken lines without a description")
		}
		streamed, err := scrape.NewParser().ParseReader(bytes.NewReader(body), 0)
		if err != nil {
			t.Fatalf("ParseReader: %v", err)
		}
		if got, want := strings.Join(streamed.DownServers(), "\n"), strings.Join(res.DownServers(), "\n"); got != want ||
			streamed.Broken != res.Broken || streamed.Known != res.Known {
			t.Fatalf("ParseReader and Parse differ: down %q / %q, broken %d / %d", got, want, streamed.Broken, res.Broken)
		}

		families, err := expfmtFamilies(body)
		if err != nil {
			return // expfmt refuses the whole body; the parser keeps what it can
		}
		if !utf8.Valid(body) {
			return
		}
		want := map[string]bool{}
		for _, m := range families["traefik_service_server_up"].GetMetric() {
			service, url, both := "", "", 0
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "service":
					service, both = l.GetValue(), both+1
				case "url":
					url, both = l.GetValue(), both+1
				}
			}
			v := m.GetGauge().GetValue()
			if m.GetUntyped() != nil {
				v = m.GetUntyped().GetValue()
			}
			if strings.ContainsRune(service+url, 0) {
				continue // refused as a broken line: NUL is the key's separator
			}
			if both == 2 && (v < 1 || math.IsNaN(v)) {
				want[service+" "+url] = true
			}
		}
		var wantList []string
		for k := range want {
			wantList = append(wantList, k)
		}
		sort.Strings(wantList)
		if got := strings.Join(res.DownServers(), "\n"); got != strings.Join(wantList, "\n") {
			t.Fatalf("down servers differ from expfmt's on a body it reads whole:\nparser: %q\nexpfmt: %q", got, wantList)
		}
	})
}

// expfmtFamilies is the oracle. expfmt v0.70.1 itself panics on some
// inputs (a label set with no metric name after a HELP line, kept under
// testdata/fuzz/FuzzParse): that is a refusal, not a verdict.
func expfmtFamilies(body []byte) (families map[string]*dto.MetricFamily, err error) {
	defer func() {
		if r := recover(); r != nil {
			families, err = nil, fmt.Errorf("expfmt panicked: %v", r)
		}
	}()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(bytes.NewReader(body))
}

func TestParseReaderMatchesParse(t *testing.T) {
	for _, name := range []string{"traefik-v3.6.12.txt", "broken.txt"} {
		body := read(t, name)
		want := scrape.NewParser().Parse(body)
		got, err := scrape.NewParser().ParseReader(strings.NewReader(string(body)), 0)
		if err != nil {
			t.Fatal(err)
		}
		if got.Samples != want.Samples || got.Broken != want.Broken || got.Known != want.Known || got.DownCount() != want.DownCount() || got.FirstError != want.FirstError {
			t.Errorf("%s: streamed %+v, whole %+v", name, got, want)
		}
	}
}

func TestParseReaderBoundsLinesAndBodies(t *testing.T) {
	long := "traefik_open_connections{entrypoint=\"" + strings.Repeat("x", scrape.MaxLineBytes+10) + "\"} 1\n"
	body := "traefik_service_server_up{service=\"a@etcd\",url=\"http://x/\"} 0\n" + long + "traefik_service_server_up{service=\"b@etcd\",url=\"http://y/\"} 0\n"
	res, err := scrape.NewParser().ParseReader(strings.NewReader(body), 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Broken != 1 || res.DownCount() != 2 || !strings.Contains(res.FirstError, "longer than") {
		t.Errorf("an enormous line: broken %d (%s), down %d", res.Broken, res.FirstError, res.DownCount())
	}
	if _, err := scrape.NewParser().ParseReader(strings.NewReader(body), 1000); err == nil {
		t.Error("a body over the limit was accepted")
	}
}

// TestTheFirstBrokenLineIsDescribedBounded: the first broken line is logged;
// its description is bounded however long the name or label it quotes, and
// a server URL's userinfo in it is redacted.
func TestTheFirstBrokenLineIsDescribedBounded(t *testing.T) {
	for _, line := range []string{
		strings.Repeat("n", 100000) + " not-a-value\n",
		"m{" + strings.Repeat("l", 100000) + " x\n",
		`m{="http://u:s3cr3t@h/"} 1` + "\n",
	} {
		res := scrape.NewParser().Parse([]byte(line))
		if res.Broken != 1 || len(res.FirstError) > 300 || strings.Contains(res.FirstError, "s3cr3t") {
			t.Errorf("broken %d, first error (%d bytes) %.300q", res.Broken, len(res.FirstError), res.FirstError)
		}
	}
}
