// Package serverurl reads the plain server URLs that etcd trees hold
// (http://10.0.1.21:8000/) without url.Parse, which allocates a URL for
// each: a cold start parsed every server twice, and those URLs shared a
// size class with what decoding keeps, whose spans they left partly used.
// Anything but the plain form is url.Parse's to read: Plain only answers
// where it answers as url.Parse does (FuzzPlainReadsAsURLParse).
package serverurl

import "strconv"

// Plain splits raw as url.Parse would give its Scheme, Hostname() and
// Port(), when raw is scheme://host[:port][/path] with a scheme of
// lower-case letters and digits, a host of letters, digits, dots and hyphens, a port of digits
// and a path of letters, digits and ._~/- only; ok is false otherwise.
func Plain(raw string) (scheme, host, port string, ok bool) {
	i := 0
	for i < len(raw) && ('a' <= raw[i] && raw[i] <= 'z' || i > 0 && '0' <= raw[i] && raw[i] <= '9') {
		i++
	}
	if i == 0 || len(raw)-i < 3 || raw[i:i+3] != "://" {
		return "", "", "", false
	}
	scheme, rest := raw[:i], raw[i+3:]
	end := 0
	for end < len(rest) && rest[end] != '/' {
		end++
	}
	authority, path := rest[:end], rest[end:]
	for j := 0; j < len(path); j++ {
		if c := path[j]; !alnum(c) && c != '.' && c != '_' && c != '~' && c != '/' && c != '-' {
			return "", "", "", false
		}
	}
	host = authority
	for j := 0; j < len(authority); j++ {
		if authority[j] == ':' {
			host, port = authority[:j], authority[j+1:]
			if port == "" {
				return "", "", "", false
			}
			for k := 0; k < len(port); k++ {
				if port[k] < '0' || port[k] > '9' {
					return "", "", "", false
				}
			}
			break
		}
	}
	if host == "" {
		return "", "", "", false
	}
	for j := 0; j < len(host); j++ {
		if c := host[j]; !alnum(c) && c != '.' && c != '-' {
			return "", "", "", false
		}
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

func alnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
