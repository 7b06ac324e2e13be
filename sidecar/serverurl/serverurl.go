// Package serverurl reads the plain server URLs that etcd trees hold
// (http://10.0.1.21:8000/) without url.Parse, which allocates a URL for
// each: a cold start parsed every server twice, and those URLs shared a
// size class with what decoding keeps, whose spans they left partly used.
// Anything but the plain form is url.Parse's to read: Plain only answers
// where it answers as url.Parse does (FuzzPlainReadsAsURLParse).
package serverurl

import (
	"strconv"
	"strings"
)

// Plain splits raw as url.Parse would give its Scheme, Hostname() and
// Port(), when raw is scheme://host[:port][/path] with a scheme of
// lower-case letters and digits, a host of letters, digits, dots and
// hyphens, a port of digits and a path of letters, digits and ._~/- only;
// ok is false otherwise.
func Plain(raw string) (scheme, host, port string, ok bool) {
	i := 0
	for i < len(raw) && ('a' <= raw[i] && raw[i] <= 'z' || i > 0 && isDigit(raw[i])) {
		i++
	}
	if i == 0 || len(raw)-i < 3 || raw[i:i+3] != "://" {
		return "", "", "", false
	}
	scheme, rest := raw[:i], raw[i+3:]
	authority, path := rest, ""
	if j := strings.IndexByte(rest, '/'); j >= 0 {
		authority, path = rest[:j], rest[j:]
	}
	host = authority
	if j := strings.IndexByte(authority, ':'); j >= 0 {
		host, port = authority[:j], authority[j+1:]
		if port == "" || !only(port, isDigit) {
			return "", "", "", false
		}
	}
	if host == "" || !only(host, isHostByte) || !only(path, isPathByte) {
		return "", "", "", false
	}
	return scheme, host, port, true
}

// Accepted tells, for a plain URL, that plugin.CheckServerURL accepts it
// (an http, https or h2c scheme, a host, a port from 1 to 65535 if any);
// false says only that CheckServerURL must judge it.
func Accepted(raw string) bool {
	scheme, _, port, ok := Plain(raw)
	if !ok || scheme != "http" && scheme != "https" && scheme != "h2c" {
		return false
	}
	if port == "" {
		return true
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535
}

// only tells whether every byte of s is one ok takes.
func only(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isHostByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || isDigit(c) || c == '.' || c == '-'
}

func isPathByte(c byte) bool { return isHostByte(c) || c == '_' || c == '~' || c == '/' }
