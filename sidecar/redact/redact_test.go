package redact_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/redact"
)

const marker = "s3cr3t"

// TestTextRedactsSecretsAndKeepsTheRest feeds texts as Traefik's router
// errors and other parties' messages may carry them, each with the marker
// where a secret sits: none may come out with it, and what names the
// problem stays.
func TestTextRedactsSecretsAndKeepsTheRest(t *testing.T) {
	testCases := []struct {
		desc, in, want string
	}{
		{"a URL with user and password", `dial http://admin:s3cr3t@10.0.0.1:8080/api: refused`, `dial http://admin:xxxxx@10.0.0.1:8080/api: refused`},
		{"a URL with a token as its user", `GET https://s3cr3t@git.example/x failed`, `GET https://xxxxx@git.example/x failed`},
		{"two URLs", `a redis://u:s3cr3t@h:6379 b h2c://v:s3cr3t@k`, `a redis://u:xxxxx@h:6379 b h2c://v:xxxxx@k`},
		{"a quoted password", `plugin auth: invalid config: password: "s3cr3t is long"`, `plugin auth: invalid config: password: "xxxxx"`},
		{"JSON", `cannot use {"apiKey":"s3cr3t","url":"http://x/"}`, `cannot use {"apiKey":"xxxxx","url":"http://x/"}`},
		{"a Go struct", `config &{Token:s3cr3t Path:/metrics}`, `config &{Token:xxxxx Path:/metrics}`},
		{"a Go map", `map[client_secret:s3cr3t name:x]`, `map[client_secret:xxxxx name:x]`},
		{"a query", `?access_token=s3cr3t&page=2`, `?access_token=xxxxx&page=2`},
		{"a header", `Authorization: Bearer s3cr3t`, `Authorization: Bearer xxxxx`},
		{"single quotes", `secret='s3cr3t'`, `secret='xxxxx'`},
		{"an env-style key", `REDIS_PASSWORD=s3cr3t`, `REDIS_PASSWORD=xxxxx`},
		{"an unterminated quote", `token: "s3cr3t`, `token: "xxxxx"`},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			got := redact.Text(test.in)
			if got != test.want {
				t.Errorf("Text(%q) = %q, want %q", test.in, got, test.want)
			}
			if strings.Contains(got, marker) {
				t.Errorf("the secret survived: %q", got)
			}
			if again := redact.Text(got); again != got {
				t.Errorf("not idempotent: %q then %q", got, again)
			}
		})
	}
}

// TestTextKeepsWhatNamesTheProblem: Traefik's usual errors pass unchanged.
func TestTextKeepsWhatNamesTheProblem(t *testing.T) {
	for _, s := range []string{
		`middleware "bai_sd_c@etcd" does not exist`,
		"error while parsing rule Hots(`llama-chat.example`)",
		`traefik-sd bai_sd_c@etcd: workerAuthority: not valid UTF-8`,
		`the service "bai_service_c@etcd" does not exist`,
		`http://10.0.1.21:8000/ is down`,
	} {
		if got := redact.Text(s); got != s {
			t.Errorf("Text(%q) = %q, want it unchanged", s, got)
		}
	}
}

func TestTextIsBounded(t *testing.T) {
	got := redact.Text(strings.Repeat("é", 2000))
	if len(got) > redact.MaxBytes+len("…") || !strings.HasSuffix(got, "…") || !strings.HasPrefix(got, "é") {
		t.Errorf("cut to %d bytes: %q…", len(got), got[:20])
	}
}

func TestURL(t *testing.T) {
	testCases := []struct{ in, want string }{
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"http://admin:s3cr3t@127.0.0.1:8080/api", "http://admin:xxxxx@127.0.0.1:8080/api"},
		{"https://s3cr3t@host/", "https://xxxxx@host/"},
		{"http://u:s3cr3t@[::1", "http://u:xxxxx@[::1"}, // does not parse: redacted as text
	}
	for _, test := range testCases {
		if got := redact.URL(test.in); got != test.want {
			t.Errorf("URL(%q) = %q, want %q", test.in, got, test.want)
		}
	}
}

// TestJSONErrorNamesNoValue: what encoding/json quotes of the input (a
// number's literal, a time that does not parse, an unknown field's name at
// any length) does not come out.
func TestJSONErrorNamesNoValue(t *testing.T) {
	var into struct {
		Port  int       `json:"metricsPort"`
		Since time.Time `json:"since"`
	}
	testCases := []struct{ desc, body, want string }{
		{"a string for a number", `{"metricsPort":"s3cr3t"}`, "metricsPort: a JSON string where int belongs"},
		{"a number that does not fit", `{"metricsPort":1111111111111111111111111111111111111111111111111111111}`, "metricsPort: a JSON number where int belongs"},
		{"a time that is not one", `{"since":"s3cr3t"}`, "not valid JSON"},
		{"not JSON", `{"metricsPort":s3cr3t}`, "not valid JSON (at byte"},
		{"an unknown field", `{"s3cr3t` + strings.Repeat("x", 100) + `":1}`, `unknown field "s3cr3t`},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			dec := json.NewDecoder(strings.NewReader(test.body))
			if test.desc == "an unknown field" {
				dec.DisallowUnknownFields()
			}
			err := dec.Decode(&into)
			if err == nil {
				t.Fatal("decoded")
			}
			got := redact.JSONError(err)
			if !strings.Contains(got, test.want) {
				t.Errorf("JSONError(%v) = %q, want it to hold %q", err, got, test.want)
			}
			if test.desc != "an unknown field" && strings.Contains(got, marker) || len(got) > 200 {
				t.Errorf("JSONError(%v) = %q: echoes the value", err, got)
			}
		})
	}
}
