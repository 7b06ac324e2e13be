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
	"sort"
	"strings"

	"github.com/traefik/paerser/parser"
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
	return parser.Fill(element, node, parser.FillerOpts{})
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
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Key < sorted[j].Key })

	simple := make([]Pair, 0, len(sorted))
	lists := map[string][]string{}
	var listKeys []string
	for _, p := range sorted {
		key := strings.TrimSuffix(p.Key, "/")
		if i := strings.LastIndexByte(key, '/'); i > 0 && isIndex(key[i+1:]) {
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
	sort.Slice(simple, func(i, j int) bool { return simple[i].Key < simple[j].Key })

	root := &parser.Node{Name: parser.DefaultRootName}
	for _, p := range simple {
		if p.Key == "" {
			continue
		}
		node := root
		for _, part := range strings.Split(p.Key, "/") {
			if isIndex(part) {
				part = "[" + part + "]"
			}
			child := findChild(node.Children, part)
			if child == nil {
				child = &parser.Node{Name: part}
				node.Children = append(node.Children, child)
			}
			node = child
		}
		node.Value = p.Value
	}
	return root
}

func isIndex(s string) bool {
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
