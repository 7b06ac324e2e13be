package dynamic

import (
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/traefik-sd/traefik-sd/plugin"
	"github.com/traefik-sd/traefik-sd/sidecar/kv"
)

// Kind is the kind of an HTTP configuration object.
type Kind string

// The kinds traefik-sd decodes. Other kinds and protocols are ignored.
const (
	Routers     Kind = "routers"
	Services    Kind = "services"
	Middlewares Kind = "middlewares"
)

// Backend.AI's plugin keys (BACKENDAI.md).
const (
	appProxyGoPlugin   = "appproxy-traefik-plugin-go"
	appProxyWASMPlugin = "appproxy-traefik-plugin"
)

// ObjectID names one router, service or middleware.
type ObjectID struct {
	Kind Kind
	Name string
}

func (id ObjectID) String() string { return "http/" + string(id.Kind) + "/" + id.Name }

// Store is the decoded HTTP configuration below one root key. It is not safe
// for concurrent use: one goroutine (the etcd watcher's consumer) owns it.
type Store struct {
	pluginName string
	raw        map[ObjectID]map[string]string
	dirty      map[ObjectID]bool

	Routers     map[string]*Router
	Services    map[string]*Service
	Middlewares map[string]*Middleware
	// Errors holds the objects that could not be decoded, with the reason.
	Errors map[ObjectID]error
}

// NewStore makes an empty store. pluginName is traefik-sd's plugin key in
// the middleware configuration (plugin/<pluginName>/...).
func NewStore(pluginName string) *Store {
	return &Store{
		pluginName:  pluginName,
		raw:         map[ObjectID]map[string]string{},
		dirty:       map[ObjectID]bool{},
		Routers:     map[string]*Router{},
		Services:    map[string]*Service{},
		Middlewares: map[string]*Middleware{},
		Errors:      map[ObjectID]error{},
	}
}

// SplitKey finds the object a key (relative to the root key) belongs to, and
// the key below it. ok is false for keys traefik-sd does not read.
func SplitKey(rel string) (id ObjectID, sub string, ok bool) {
	parts := strings.SplitN(rel, "/", 4)
	if len(parts) < 4 || !strings.EqualFold(parts[0], "http") || parts[2] == "" || parts[3] == "" {
		return ObjectID{}, "", false
	}
	switch kind := Kind(strings.ToLower(parts[1])); kind {
	case Routers, Services, Middlewares:
		return ObjectID{Kind: kind, Name: parts[2]}, parts[3], true
	}
	return ObjectID{}, "", false
}

// Put records a key's value; the object is decoded again at the next Commit.
func (s *Store) Put(id ObjectID, sub, value string) {
	obj := s.raw[id]
	if obj == nil {
		obj = map[string]string{}
		s.raw[id] = obj
	}
	if old, ok := obj[sub]; ok && old == value {
		return
	}
	obj[sub] = value
	s.dirty[id] = true
}

// Delete removes a key.
func (s *Store) Delete(id ObjectID, sub string) {
	obj := s.raw[id]
	if _, ok := obj[sub]; !ok {
		return
	}
	delete(obj, sub)
	if len(obj) == 0 {
		delete(s.raw, id)
	}
	s.dirty[id] = true
}

// Reset replaces every key, as after a re-list; only objects whose keys
// differ are decoded again.
func (s *Store) Reset(pairs map[ObjectID]map[string]string) {
	for id, obj := range s.raw {
		if !sameKeys(obj, pairs[id]) {
			s.dirty[id] = true
		}
	}
	for id, obj := range pairs {
		if !sameKeys(obj, s.raw[id]) {
			s.dirty[id] = true
		}
	}
	s.raw = pairs
}

func sameKeys(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Commit decodes the objects changed since the last Commit. It returns the
// objects whose decoded content changed (an identical rewrite changes nothing)
// and the decoding errors found now, each naming its object.
func (s *Store) Commit() (changed []ObjectID, errs []error) {
	for id := range s.dirty {
		if s.decode(id) {
			changed = append(changed, id)
		}
		if err := s.Errors[id]; err != nil {
			errs = append(errs, err)
		}
	}
	s.dirty = map[ObjectID]bool{}
	sort.Slice(changed, func(i, j int) bool {
		if changed[i].Kind != changed[j].Kind {
			return changed[i].Kind < changed[j].Kind
		}
		return changed[i].Name < changed[j].Name
	})
	return changed, errs
}

// Len is the number of objects with keys, decoded or not.
func (s *Store) Len() int { return len(s.raw) }

// decode decodes one object and reports whether its decoded form changed.
func (s *Store) decode(id ObjectID) bool {
	obj := s.raw[id]
	delete(s.Errors, id)
	var (
		value interface{}
		err   error
	)
	if len(obj) > 0 {
		value, err = s.decodeObject(id, obj)
		if err != nil {
			s.Errors[id] = &kv.Error{Key: id.String(), Err: err}
			value = nil
		}
	}
	switch id.Kind {
	case Routers:
		return setIfChanged(s.Routers, id.Name, value)
	case Services:
		return setIfChanged(s.Services, id.Name, value)
	default:
		return setIfChanged(s.Middlewares, id.Name, value)
	}
}

func setIfChanged[T any](m map[string]*T, name string, value interface{}) bool {
	old, had := m[name]
	if value == nil {
		delete(m, name)
		return had
	}
	v := value.(*T)
	if had && reflect.DeepEqual(old, v) {
		return false
	}
	m[name] = v
	return true
}

func pairsOf(obj map[string]string, prefix string) []kv.Pair {
	pairs := make([]kv.Pair, 0, len(obj))
	for k, v := range obj {
		if prefix != "" {
			if len(k) <= len(prefix) || !strings.EqualFold(k[:len(prefix)], prefix) {
				continue
			}
			k = k[len(prefix):]
		}
		pairs = append(pairs, kv.Pair{Key: k, Value: v})
	}
	return pairs
}

func (s *Store) decodeObject(id ObjectID, obj map[string]string) (value interface{}, err error) {
	// A decoder panic on some odd input must cost one object, not the process.
	defer func() {
		if p := recover(); p != nil {
			value, err = nil, fmt.Errorf("decoder panicked: %v", p)
		}
	}()
	for k, v := range obj {
		if !utf8.ValidString(v) {
			return nil, fmt.Errorf("%s: value is not valid UTF-8", k)
		}
	}
	switch id.Kind {
	case Routers:
		r := &Router{}
		if err := kv.Decode(pairsOf(obj, ""), r); err != nil {
			return nil, err
		}
		return r, nil
	case Services:
		svc := &Service{}
		if err := kv.Decode(pairsOf(obj, ""), svc); err != nil {
			return nil, err
		}
		if svc.LoadBalancer != nil {
			for i, srv := range svc.LoadBalancer.Servers {
				if err := checkServerURL(srv.URL); err != nil {
					return nil, fmt.Errorf("loadBalancer/servers/[%d]/url: %w", i, err)
				}
			}
		}
		return svc, nil
	default:
		return s.decodeMiddleware(obj)
	}
}

// decodeMiddleware reads only the plugin sections traefik-sd understands;
// any other middleware decodes to an empty, harmless value.
func (s *Store) decodeMiddleware(obj map[string]string) (*Middleware, error) {
	m := &Middleware{}
	if pairs := pairsOf(obj, "plugin/"+s.pluginName+"/"); len(pairs) > 0 {
		cfg := plugin.CreateConfig()
		if err := kv.Decode(pairs, cfg); err != nil {
			return nil, err
		}
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
		cfg.Normalize()
		// The sidecar's own settings are not the plugin's to decide.
		cfg.SidecarURL, cfg.Token, cfg.RemovalDelay, cfg.ResyncInterval = "", "", "", ""
		m.SD = cfg
	}
	if pairs := pairsOf(obj, "plugin/"+appProxyGoPlugin+"/"); len(pairs) > 0 {
		var goCfg struct {
			ID         string
			SessionIDs []string
		}
		if err := kv.Decode(pairs, &goCfg); err != nil {
			return nil, err
		}
		m.AppProxy = &AppProxyIdentity{CircuitID: goCfg.ID, SessionIDs: nonEmpty(goCfg.SessionIDs)}
	}
	for k, v := range obj {
		if !strings.EqualFold(k, "plugin/"+appProxyWASMPlugin+"/circuit") {
			continue
		}
		var circuit struct {
			ID         string   `json:"id"`
			App        string   `json:"app"`
			SessionIDs []string `json:"session_ids"`
		}
		if err := json.Unmarshal([]byte(v), &circuit); err != nil {
			return nil, fmt.Errorf("%s: circuit JSON: %w", k, err)
		}
		if m.AppProxy == nil {
			m.AppProxy = &AppProxyIdentity{}
		}
		if m.AppProxy.CircuitID == "" {
			m.AppProxy.CircuitID = circuit.ID
		}
		if len(m.AppProxy.SessionIDs) == 0 {
			m.AppProxy.SessionIDs = nonEmpty(circuit.SessionIDs)
		}
		m.AppProxy.App = circuit.App
	}
	return m, nil
}

// checkServerURL refuses what Traefik could not dial either.
func checkServerURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "h2c" {
		return fmt.Errorf("%q: scheme must be http, https or h2c", raw)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("%q: no host", raw)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: port out of range", raw)
		}
	}
	return nil
}

func nonEmpty(ids []string) []string {
	var out []string
	for _, id := range ids {
		if id = strings.TrimSpace(id); id != "" {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}
