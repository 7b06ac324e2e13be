package targets

import "unicode/utf8"

// AppendJSON appends the HTTP SD body: [{"targets":["a"],"labels":{…}},…],
// one group per target, in the order given (Build sorts), "[]" when empty.
func AppendJSON(b []byte, ts []Target) []byte {
	b = append(b, '[')
	b = appendElements(b, ts)
	return append(b, ']')
}

// appendElements appends the array's elements, without its brackets.
func appendElements(b []byte, ts []Target) []byte {
	for i, t := range ts {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendElement(b, t.Address, len(t.Labels), func(j int) (string, string) { return t.Labels[j].Name, t.Labels[j].Value })
	}
	return b
}

// appendStored appends stored targets as appendElements appends the
// targets they were made from.
func appendStored(b []byte, ts []storedTarget) []byte {
	for i := range ts {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendElement(b, ts[i].address, len(*ts[i].schema), ts[i].label)
	}
	return b
}

// appendElement appends one target's group: its address and its n labels.
func appendElement(b []byte, address string, n int, label func(int) (name, value string)) []byte {
	b = append(b, `{"targets":[`...)
	b = appendString(b, address)
	b = append(b, `],"labels":{`...)
	for j := 0; j < n; j++ {
		if j > 0 {
			b = append(b, ',')
		}
		name, value := label(j)
		b = appendString(b, name)
		b = append(b, ':')
		b = appendString(b, value)
	}
	return append(b, "}}"...)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaping as encoding/json does
// (HTML-safe, invalid UTF-8 replaced).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
