// Package scrape reads Traefik's /metrics: which servers Traefik reports up or
// down, and when its configuration last reloaded.
//
// The parser walks the text exposition as bytes and keeps only the samples
// it needs; everything else is checked for shape and skipped, with no
// allocation per line.
package scrape

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/traefik-sd/traefik-sd/sidecar/redact"
)

// Metric names traefik-sd reads from Traefik.
var (
	serverUpName     = []byte("traefik_service_server_up")
	reloadSuccess    = []byte("traefik_config_last_reload_success")
	reloadFailure    = []byte("traefik_config_last_reload_failure")
	labelServiceName = []byte("service")
	labelURLName     = []byte("url")
)

// Parser parses bodies one after another, reusing its buffers and the key
// strings of servers it has seen before.
type Parser struct {
	key    []byte
	long   []byte
	reader *bufio.Reader
	intern map[string]string
}

// NewParser returns a Parser.
func NewParser() *Parser { return &Parser{intern: map[string]string{}} }

// Parse reads a whole exposition body held in memory.
func (p *Parser) Parse(body []byte) Result {
	st := p.begin()
	for len(body) > 0 {
		var line []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			line, body = body, nil
		}
		st.line(p, line)
	}
	return p.end(st)
}

// MaxLineBytes bounds one line of a streamed body; a longer one is broken.
const MaxLineBytes = 1 << 20

// ParseReader reads an exposition as it streams in, through a fixed buffer:
// memory does not grow with the body. maxBytes (0: no limit) bounds the
// body; reading stops with an error past it.
func (p *Parser) ParseReader(r io.Reader, maxBytes int64) (Result, error) {
	if p.reader == nil {
		p.reader = bufio.NewReaderSize(r, 64<<10)
	} else {
		p.reader.Reset(r)
	}
	st := p.begin()
	var total int64
	for {
		line, err := p.reader.ReadSlice('\n')
		total += int64(len(line))
		if maxBytes > 0 && total > maxBytes {
			return p.end(st), fmt.Errorf("body larger than %d bytes", maxBytes)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: gather it, up to MaxLineBytes.
			p.long = append(p.long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = p.reader.ReadSlice('\n')
				total += int64(len(line))
				if len(p.long) <= MaxLineBytes {
					p.long = append(p.long, line...)
				}
			}
			if maxBytes > 0 && total > maxBytes {
				return p.end(st), fmt.Errorf("body larger than %d bytes", maxBytes)
			}
			if len(p.long) > MaxLineBytes {
				st.broken(fmt.Sprintf("line longer than %d bytes", MaxLineBytes))
				line = nil
			} else {
				line = p.long
			}
		}
		if len(line) > 0 {
			st.line(p, bytes.TrimSuffix(line, []byte{'\n'}))
		}
		if err == io.EOF {
			return p.end(st), nil
		}
		if err != nil {
			return p.end(st), err
		}
	}
}

// parseState is one parse in progress.
type parseState struct {
	res    Result
	seen   map[string]string
	lineNo int
}

func (p *Parser) begin() *parseState {
	return &parseState{res: Result{}, seen: make(map[string]string, len(p.intern))}
}

func (p *Parser) end(st *parseState) Result {
	// Forget servers that are gone, so the intern table stays bounded.
	p.intern = st.seen
	return st.res
}

func (st *parseState) line(p *Parser, line []byte) {
	st.lineNo++
	line = trimSpace(line)
	if len(line) == 0 || line[0] == '#' {
		return
	}
	st.res.Samples++
	if err := p.sample(line, &st.res, st.seen); err != "" {
		st.broken(err)
	}
}

func (st *parseState) broken(err string) {
	st.res.Broken++
	if st.res.FirstError == "" {
		// Logged: bounded, and a server URL's userinfo in a label redacted.
		st.res.FirstError = redact.Text(fmt.Sprintf("line %d: %s", st.lineNo, err))
	}
}

// sample handles one sample line; it returns what was wrong, or "".
func (p *Parser) sample(line []byte, res *Result, seen map[string]string) string {
	n := 0
	for n < len(line) && isNameByte(line[n], n == 0) {
		n++
	}
	if n == 0 {
		return fmt.Sprintf("expected a metric name, found %q", clip(line))
	}
	name, rest := line[:n], line[n:]
	var labels []byte
	if len(rest) > 0 && rest[0] == '{' {
		end, err := skipLabels(rest)
		if err != "" {
			return err
		}
		labels, rest = rest[1:end], rest[end+1:]
	}
	rest = trimSpace(rest)
	value := rest
	if i := bytes.IndexAny(rest, " \t"); i >= 0 {
		value = rest[:i] // a timestamp may follow
	}
	if !isNumber(value) {
		return fmt.Sprintf("%s: expected a value, found %q", clip(name), clip(value))
	}
	switch {
	case bytes.Equal(name, serverUpName):
		service, ok1 := labelValue(labels, labelServiceName)
		url, ok2 := labelValue(labels, labelURLName)
		if !ok1 || !ok2 {
			return fmt.Sprintf("%s: service or url label missing", name)
		}
		if bytes.IndexByte(service, 0) >= 0 || bytes.IndexByte(url, 0) >= 0 {
			// NUL separates service from url in the server's key; Traefik
			// never names a service or server with one.
			return fmt.Sprintf("%s: NUL byte in the service or url label", name)
		}
		res.Known++
		up := len(value) == 1 && value[0] == '1'
		if !up {
			f, err := strconv.ParseFloat(string(value), 64)
			if err != nil {
				return fmt.Sprintf("%s: value %q", name, clip(value))
			}
			up = f >= 1
		}
		p.key = append(append(append(p.key[:0], service...), 0), url...)
		key, ok := p.intern[string(p.key)]
		if !ok {
			key = string(p.key)
		}
		seen[key] = key
		if !up {
			res.MarkDown(key)
		}
	case bytes.Equal(name, reloadSuccess):
		res.LastReloadSuccess, _ = strconv.ParseFloat(string(value), 64)
	case bytes.Equal(name, reloadFailure):
		res.LastReloadFailure, _ = strconv.ParseFloat(string(value), 64)
	}
	return ""
}

// skipLabels finds the closing brace of a label set that starts at s[0] == '{',
// checking each name="value" pair on the way.
func skipLabels(s []byte) (int, string) {
	i := 1
	for {
		for i < len(s) && (isBlank(s[i]) || s[i] == ',') {
			i++
		}
		if i >= len(s) {
			return 0, "unterminated label set"
		}
		if s[i] == '}' {
			return i, ""
		}
		start := i
		for i < len(s) && isNameByte(s[i], i == start) {
			i++
		}
		if i == start {
			return 0, fmt.Sprintf("expected a label name at column %d, found %q", i+1, clip(s[i:]))
		}
		for i < len(s) && isBlank(s[i]) {
			i++
		}
		if i+1 >= len(s) || s[i] != '=' || s[i+1] != '"' {
			return 0, fmt.Sprintf("expected =\" after label %q", clip(s[start:i]))
		}
		i += 2
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' {
				i++
			}
		}
		if i >= len(s) {
			return 0, fmt.Sprintf("unterminated value of label %q", s[start:i])
		}
		i++
	}
}

// labelValue returns the value of label name in a checked label set,
// unescaping only when it contains a backslash.
func labelValue(labels, name []byte) ([]byte, bool) {
	i := 0
	for i < len(labels) {
		for i < len(labels) && (isBlank(labels[i]) || labels[i] == ',') {
			i++
		}
		start := i
		for i < len(labels) && labels[i] != '=' && !isBlank(labels[i]) {
			i++
		}
		key := labels[start:i]
		for i < len(labels) && labels[i] != '"' {
			i++
		}
		i++
		vStart, escaped := i, false
		for ; i < len(labels) && labels[i] != '"'; i++ {
			if labels[i] == '\\' {
				escaped = true
				i++
			}
		}
		if i > len(labels) {
			return nil, false
		}
		value := labels[vStart:i]
		i++
		if bytes.Equal(key, name) {
			if escaped {
				return unescape(value), true
			}
			return value, true
		}
	}
	return nil, false
}

func unescape(v []byte) []byte {
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
			switch v[i] {
			case 'n':
				out = append(out, '\n')
			default:
				out = append(out, v[i])
			}
			continue
		}
		out = append(out, v[i])
	}
	return out
}

func isNameByte(b byte, first bool) bool {
	return b == '_' || b == ':' || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (!first && b >= '0' && b <= '9')
}

// isNumber accepts what the text format allows as a value: a Go float,
// NaN or ±Inf. It only checks the characters; the few values that are read
// are parsed in full.
func isNumber(v []byte) bool {
	if len(v) == 0 {
		return false
	}
	for _, b := range v {
		switch {
		case b >= '0' && b <= '9', b == '.', b == '-', b == '+', b == 'e', b == 'E', b == '_', b == 'x', b == 'X', b == 'p', b == 'P':
		case b == 'N' || b == 'a' || b == 'I' || b == 'n' || b == 'f' || b == 'i':
		case b >= 'A' && b <= 'F' || b >= 'a' && b <= 'f':
		default:
			return false
		}
	}
	return true
}

// isBlank is the text format's whitespace between tokens: expfmt takes a
// tab wherever it takes a space.
func isBlank(b byte) bool { return b == ' ' || b == '\t' }

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func clip(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}
