// Package redact keeps secrets out of the error text the sidecar logs and
// shows on its status page. The sidecar's own errors name the field or key
// and say what is wrong, never the value; this package is for text it does
// not write itself (Traefik's router errors, an answer's body, a decoder's
// message) and for the URLs it names.
//
// The rule, the same everywhere:
//   - a URL's userinfo is redacted: user:password@ becomes user:xxxxx@ (as
//     url.URL.Redacted), and a userinfo without a password, which is how a
//     token rides in a URL, becomes xxxxx@;
//   - the value after a key that names a secret (a key containing password,
//     passwd, secret, token, apikey/api_key/api-key, private_key/privatekey,
//     credential, authorization, cookie, signature; not a bare "auth", which
//     names middlewares more often than secrets) and ":" or "=" becomes
//     xxxxx, quoted or not:
//     `password: "x"`, `"apiKey":"x"`, `{Token:x}`, `token=x`, and
//     `Authorization: Bearer x` (the scheme word is kept);
//   - the text is cut at MaxBytes.
//
// Anything else in such text is kept: Traefik's errors name routers,
// services, middlewares and rules, which an operator needs to act on.
package redact

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Mask replaces a redacted secret.
const Mask = "xxxxx"

// MaxBytes bounds one redacted text.
const MaxBytes = 1024

// URL returns raw with its userinfo redacted. A URL that does not parse is
// redacted as text.
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return Text(raw)
	}
	if u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		return u.Redacted()
	}
	u.User = url.User(Mask)
	return u.String()
}

var (
	// userinfo is scheme://userinfo@ anywhere in a text.
	userinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://)([^/?#@\s"'<>\x60]*)@`)
	// keyValue is a key that may name a secret, a separator and its value:
	// quoted, an auth scheme and its credentials, or a bare word.
	keyValue = regexp.MustCompile(`([A-Za-z0-9_.\-]*(?i:passw|pwd|secret|token|api[_\-]?key|private[_\-]?key|credential|authorization|cookie|signature)[A-Za-z0-9_.\-]*)` +
		`(["']?\s*[:=]\s*)` +
		`("(?:[^"\\]|\\.)*"?|'[^']*'?|(?i:bearer|basic|token|digest)\s+[^\s,;&}\])]+|[^\s,;&}\])"']+)`)
	authScheme = regexp.MustCompile(`^(?i:bearer|basic|token|digest)\s+`)
)

// Text returns s with URL userinfo and the values of secret-named keys
// redacted, cut at MaxBytes.
func Text(s string) string {
	s = Cut(s, MaxBytes)
	s = userinfo.ReplaceAllStringFunc(s, func(m string) string {
		sub := userinfo.FindStringSubmatch(m)
		user, _, hasPass := strings.Cut(sub[2], ":")
		if !hasPass {
			return sub[1] + Mask + "@"
		}
		return sub[1] + user + ":" + Mask + "@"
	})
	return keyValue.ReplaceAllStringFunc(s, func(m string) string {
		sub := keyValue.FindStringSubmatch(m)
		key, sep, value := sub[1], sub[2], sub[3]
		if !secretKey(key) || value == Mask || value == `"`+Mask+`"` {
			return m
		}
		switch {
		case strings.HasPrefix(value, `"`):
			value = `"` + Mask + `"`
		case strings.HasPrefix(value, `'`):
			value = `'` + Mask + `'`
		default:
			if scheme := authScheme.FindString(value); scheme != "" {
				value = scheme + Mask
			} else {
				value = Mask
			}
		}
		return key + sep + value
	})
}

// secretKey tells whether a key names a secret. The expression finds the
// candidates; this says which (pwd must not be a substring of a longer word).
func secretKey(key string) bool {
	k := strings.ToLower(key)
	for _, w := range []string{"passw", "secret", "token", "apikey", "api_key", "api-key", "privatekey", "private_key", "private-key", "credential", "authorization", "cookie", "signature"} {
		if strings.Contains(k, w) {
			return true
		}
	}
	return k == "pwd" || strings.HasSuffix(k, "_pwd") || strings.HasSuffix(k, ".pwd") || strings.HasSuffix(k, "-pwd")
}

// Quoted replaces every double-quoted string in s with "…": for a message
// of a decoder that quotes the value it could not read.
func Quoted(s string) string {
	return quoted.ReplaceAllString(Cut(s, MaxBytes), `"…"`)
}

var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"?`)

// Cut bounds s to n bytes, on a rune boundary, marking the cut with "…".
func Cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// JSONError describes a JSON decoding error without the value it choked on:
// encoding/json quotes a field it does not know, the literal of a number
// that does not fit, a character it did not expect, and a value a field's
// own decoder refused (a time, say) in that decoder's words.
func JSONError(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("not valid JSON (at byte %d)", syntax.Offset)
	case errors.As(err, &typ):
		kind, _, _ := strings.Cut(typ.Value, " ") // "number 1e999" names the literal
		where := typ.Field
		if where == "" {
			where = "value"
		}
		return fmt.Sprintf("%s: a JSON %s where %s belongs", Cut(where, 256), kind, typ.Type)
	case strings.HasPrefix(err.Error(), `json: unknown field "`):
		return "unknown field " + strconv.Quote(Cut(strings.TrimSuffix(strings.TrimPrefix(err.Error(), `json: unknown field "`), `"`), 64))
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "not valid JSON (it ends early)"
	}
	return "not valid JSON: " + Quoted(err.Error())
}
