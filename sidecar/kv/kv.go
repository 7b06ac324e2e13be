// Package kv decodes flat key/value pairs, as Traefik's KV providers store
// them, into typed structures. It goes through the same three stages as
// Traefik's own pkg/config/kv, with paerser doing the typed part:
//
//	KV pairs -> tree of untyped nodes     (split keys on '/', "N" becomes "[N]",
//	                                       scalar lists "x/N" join into "x")
//	untyped nodes -> nodes with metadata  (paerser AddMetadata)
//	typed nodes -> typed element          (paerser Fill)
//
// Unlike Traefik, it first prunes the nodes that name no field of the target
// type, so that a caller can define only the slice of a configuration it needs
// while Traefik's full configuration sits in the store.
package kv

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/traefik-sd/traefik-sd/sidecar/redact"
	"github.com/traefik/paerser/parser"
	"github.com/traefik/paerser/types"
)

// Pair is one key and its value. Keys are relative to the decoded element.
type Pair struct {
	Key   string
	Value string
}

// Decode fills element (a pointer to a struct) from pairs whose keys are
// relative to it, e.g. "loadBalancer/servers/0/url". Field names match
// ignoring case, as in Traefik.
func Decode(pairs []Pair, element interface{}) error {
	node := ToNode(pairs)
	if node == nil {
		return nil
	}
	prune(node, reflect.TypeOf(element))
	if len(node.Children) == 0 {
		return nil
	}
	if err := parser.AddMetadata(element, node, parser.MetadataOpts{TagName: parser.TagLabel}); err != nil {
		return err
	}
	// paerser's own message for a value that does not parse quotes the
	// value and names no key (strconv.ParseInt: parsing "…"): values come
	// from etcd and may be secrets, and the log and the status page show
	// these errors. The values are checked first, by key.
	if err := checkValues(node, reflect.TypeOf(element), ""); err != nil {
		return err
	}
	if err := parser.Fill(element, node, parser.FillerOpts{}); err != nil {
		return fmt.Errorf("cannot decode: %s", redact.Quoted(err.Error()))
	}
	return nil
}

// checkValues finds a scalar value that does not parse as its field's type,
// as paerser's Fill would parse it, and names its key, not the value.
func checkValues(node *parser.Node, t reflect.Type, path string) error {
	if node.Disabled {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		for _, child := range node.Children {
			f, ok := t.FieldByName(child.FieldName)
			if !ok {
				continue
			}
			if err := checkValues(child, f.Type, join(path, child.Name)); err != nil {
				return err
			}
		}
	case reflect.Map:
		for _, child := range node.Children {
			if err := checkValues(child, t.Elem(), join(path, child.Name)); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if isStructLike(t.Elem()) {
			for _, child := range node.Children {
				if err := checkValues(child, t.Elem(), join(path, child.Name)); err != nil {
					return err
				}
			}
			return nil
		}
		if node.Value == "" {
			return nil
		}
		for _, v := range strings.Split(node.Value, ",") {
			if want := parses(strings.TrimSpace(v), t.Elem()); want != "" {
				return fmt.Errorf("%s: an item is not %s", path, want)
			}
		}
	default:
		if want := parses(node.Value, t); want != "" {
			return fmt.Errorf("%s: not %s", path, want)
		}
	}
	return nil
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "/" + name
}

var (
	durationType    = reflect.TypeOf(time.Duration(0))
	paerserDuration = reflect.TypeOf(types.Duration(0))
)

// bits names the size of an integer type narrower than 64 bits.
func bits(t reflect.Type) string {
	if t.Bits() < 64 {
		return fmt.Sprintf(" of %d bits", t.Bits())
	}
	return ""
}

// parses says what v is not, as a value of t, or "" if it parses.
func parses(v string, t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		if _, err := strconv.ParseBool(v); err != nil {
			return "true or false"
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		_, err := strconv.ParseInt(v, 10, t.Bits())
		if err != nil && (t == durationType || t == paerserDuration) {
			if _, err := time.ParseDuration(v); err != nil {
				return "a duration"
			}
			return ""
		}
		if err != nil {
			return "an integer" + bits(t)
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if _, err := strconv.ParseUint(v, 10, t.Bits()); err != nil {
			return "an unsigned integer" + bits(t)
		}
	case reflect.Float32, reflect.Float64:
		if _, err := strconv.ParseFloat(v, t.Bits()); err != nil {
			return "a number"
		}
	}
	return ""
}

// ToNode builds the untyped tree as Traefik does: pairs sorted by key, keys
// ending in a number are a list of scalars joined with commas (in key text
// order, as Traefik has it), other numeric segments become "[N]", and names
// compare ignoring case.
func ToNode(pairs []Pair) *parser.Node {
	if len(pairs) == 0 {
		return nil
	}
	sorted := append([]Pair(nil), pairs...)
	// slices', not sort.Slice, which allocates twice a call, on every
	// object decoded; the same algorithm, so equal keys (a/0 beside a)
	// keep the order Traefik's sort.Slice gives them.
	slices.SortFunc(sorted, byKey)

	simple := make([]Pair, 0, len(sorted))
	lists := map[string][]string{}
	var listKeys []string
	for _, p := range sorted {
		key := strings.TrimSuffix(p.Key, "/")
		if i := strings.LastIndexByte(key, '/'); i > 0 && IsIndex(key[i+1:]) {
			base := key[:i]
			if _, seen := lists[base]; !seen {
				listKeys = append(listKeys, base)
			}
			lists[base] = append(lists[base], p.Value)
			continue
		}
		simple = append(simple, Pair{Key: key, Value: p.Value})
	}
	for _, base := range listKeys {
		simple = append(simple, Pair{Key: base, Value: strings.Join(lists[base], ",")})
	}
	slices.SortFunc(simple, byKey)

	// The nodes, short-lived, are one allocation: one each (136 bytes)
	// shared the spans of what decoding keeps of that size, which a cold
	// start's collections then left partly used. n is every key's
	// segments, so append never moves them.
	n := 1
	for _, p := range simple {
		n += strings.Count(p.Key, "/") + 1
	}
	nodes := make([]parser.Node, 1, n)
	root := &nodes[0]
	root.Name = parser.DefaultRootName
	for _, p := range simple {
		if p.Key == "" {
			continue
		}
		node := root
		for part := range strings.SplitSeq(p.Key, "/") {
			if IsIndex(part) {
				part = "[" + part + "]"
			}
			child := findChild(node.Children, part)
			if child == nil {
				nodes = append(nodes, parser.Node{Name: part})
				child = &nodes[len(nodes)-1]
				node.Children = append(node.Children, child)
			}
			node = child
		}
		node.Value = p.Value
	}
	return root
}

func byKey(a, b Pair) int { return strings.Compare(a.Key, b.Key) }

// IsIndex tells whether a key's segment is a list index (digits only).
func IsIndex(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func findChild(nodes []*parser.Node, name string) *parser.Node {
	for _, n := range nodes {
		if strings.EqualFold(n.Name, name) {
			return n
		}
	}
	return nil
}

// prune drops the children of node that name no field of t, recursively.
func prune(node *parser.Node, t reflect.Type) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		kept := node.Children[:0]
		for _, child := range node.Children {
			f, ok := fieldByNameFold(t, child.Name)
			if !ok {
				continue
			}
			had := len(child.Children)
			prune(child, f.Type)
			// A section whose every key was unknown would otherwise be an
			// empty struct, which paerser refuses.
			if had > 0 && len(child.Children) == 0 && isStructLike(f.Type) {
				continue
			}
			kept = append(kept, child)
		}
		node.Children = kept
	case reflect.Slice:
		if isStructLike(t.Elem()) {
			for _, child := range node.Children {
				prune(child, t.Elem())
			}
		}
	case reflect.Map:
		if t.Elem().Kind() != reflect.Interface {
			for _, child := range node.Children {
				prune(child, t.Elem())
			}
		}
	}
}

func isStructLike(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct
}

func fieldByNameFold(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.PkgPath == "" && strings.EqualFold(f.Name, name) {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// Error is a decoding failure of one object, with the key prefix it came from.
type Error struct {
	Key string
	Err error
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %v", e.Key, e.Err) }

func (e *Error) Unwrap() error { return e.Err }
