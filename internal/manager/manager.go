// Package manager plays the part of Backend.AI's Manager that serves
// GET /metrics/service_discovery: it reads the ServiceDiscovery store the
// way the Manager does (Redis: SCAN service_discovery.*.*, HGETALL, one JSON
// decode per field; etcd: every leaf under the namespace's prefix),
// validates every entry strictly (one bad entry fails the whole answer, as
// it does in the Manager) and renders the Manager's answer. Tests compare it
// with the sidecar's /v1/targets, and a real Prometheus scrapes through it.
//
// It decodes with its own types, not the writer's, so that a change to
// what traefik-sd writes is checked against what Backend.AI reads.
package manager

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Endpoint is ServiceMetadata.endpoint.
type Endpoint struct {
	Address, Protocol, PrometheusAddress string
	Port                                 int
}

// Service is one ServiceMetadata as the Manager validates it.
type Service struct {
	ID, DisplayName, Group, Version string
	Endpoint                        Endpoint
	RegistrationTime, LastHeartbeat float64
	Labels                          map[string]string
}

// Group is one target group of the Manager's answer.
type Group struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)

// Render is the Manager's answer: each service's prometheus_address with its
// labels, plus service_id, service_group, display_name and version. Sorted
// by service id, so that answers compare.
func Render(services []Service) []Group {
	out := make([]Group, 0, len(services))
	for _, s := range services {
		labels := make(map[string]string, len(s.Labels)+4)
		for k, v := range s.Labels {
			labels[k] = v
		}
		labels["service_id"], labels["service_group"] = s.ID, s.Group
		labels["display_name"], labels["version"] = s.DisplayName, s.Version
		out = append(out, Group{Targets: []string{s.Endpoint.PrometheusAddress}, Labels: labels})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Labels["service_id"] < out[j].Labels["service_id"] })
	return out
}

// Reader reads every service of a store.
type Reader func(ctx context.Context) ([]Service, error)

// Handler serves GET /metrics/service_discovery from read; a store that
// cannot be read, or one bad entry, fails the whole answer (500).
func Handler(read Reader) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/metrics/service_discovery" {
			http.NotFound(rw, req)
			return
		}
		services, err := read(req.Context())
		if err != nil {
			http.Error(rw, err.Error(), http.StatusInternalServerError)
			return
		}
		rw.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(rw).Encode(Render(services))
	})
}

// RedisReader reads as redis_discovery.RedisServiceDiscovery.discover does.
// In HA deployments the Manager finds the master through Sentinel: give it
// a failover client (redis.NewFailoverClient, testbed's Sentinel.Client).
func RedisReader(client *redis.Client) Reader {
	return func(ctx context.Context) ([]Service, error) {
		var keys []string
		iter := client.Scan(ctx, 0, "service_discovery.*.*", 100).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			return nil, err
		}
		if len(keys) == 0 {
			return nil, errors.New("no service groups found")
		}
		out := make([]Service, 0, len(keys))
		for _, key := range keys {
			hash, err := client.HGetAll(ctx, key).Result()
			if err != nil {
				return nil, err
			}
			if len(hash) == 0 {
				return nil, fmt.Errorf("service key %s not found", key)
			}
			s, err := decodeRedis(key, hash)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	}
}

func decodeRedis(key string, hash map[string]string) (Service, error) {
	var s Service
	fail := func(field, format string, args ...any) (Service, error) {
		return Service{}, fmt.Errorf("%s field %s: %s", key, field, fmt.Sprintf(format, args...))
	}
	for _, f := range []string{"id", "display_name", "service_group", "version", "endpoint", "health_status", "labels"} {
		if _, ok := hash[f]; !ok {
			return fail(f, "missing")
		}
	}
	for f, raw := range hash {
		var err error
		switch f {
		case "id":
			s.ID, err = jsonString(raw)
		case "display_name":
			s.DisplayName, err = jsonString(raw)
		case "service_group":
			s.Group, err = jsonString(raw)
		case "version":
			s.Version, err = jsonString(raw)
		case "endpoint":
			err = decodeObject(raw, map[string]func(json.RawMessage) error{
				"address":            func(r json.RawMessage) (e error) { s.Endpoint.Address, e = jsonString(string(r)); return },
				"protocol":           func(r json.RawMessage) (e error) { s.Endpoint.Protocol, e = jsonString(string(r)); return },
				"prometheus_address": func(r json.RawMessage) (e error) { s.Endpoint.PrometheusAddress, e = jsonString(string(r)); return },
				"port":               func(r json.RawMessage) (e error) { s.Endpoint.Port, e = jsonInt(r); return },
			})
		case "health_status":
			err = decodeObject(raw, map[string]func(json.RawMessage) error{
				"registration_time": func(r json.RawMessage) (e error) { s.RegistrationTime, e = jsonFloat(r); return },
				"last_heartbeat":    func(r json.RawMessage) (e error) { s.LastHeartbeat, e = jsonFloat(r); return },
			})
		case "labels":
			s.Labels, err = jsonLabels(raw)
		default:
			return fail(f, "not a field of ServiceMetadata")
		}
		if err != nil {
			return fail(f, "%v", err)
		}
	}
	if want := "service_discovery." + s.Group + "." + s.ID; key != want {
		return Service{}, fmt.Errorf("%s: its service_group and id say %s", key, want)
	}
	return s, validate(key, s)
}

// EtcdReader reads as etcd_discovery.ETCDServiceDiscovery.discover does:
// the namespace's prefix, one key per leaf, nested as <group>/<id>/<leaf>.
func EtcdReader(client *clientv3.Client, namespace string) Reader {
	return func(ctx context.Context) ([]Service, error) {
		prefix := "/sorna/" + namespace + "/ai/backend/service_discovery/"
		resp, err := client.Get(ctx, prefix, clientv3.WithPrefix())
		if err != nil {
			return nil, err
		}
		entries := map[string]map[string]string{}
		var order []string
		for _, kv := range resp.Kvs {
			parts := strings.SplitN(strings.TrimPrefix(string(kv.Key), prefix), "/", 3)
			if len(parts) != 3 {
				return nil, fmt.Errorf("key %s is not <group>/<id>/<leaf>", kv.Key)
			}
			k := parts[0] + "/" + parts[1]
			if entries[k] == nil {
				entries[k] = map[string]string{}
				order = append(order, k)
			}
			entries[k][parts[2]] = string(kv.Value)
		}
		out := make([]Service, 0, len(entries))
		for _, k := range order {
			s, err := decodeEtcd(k, entries[k])
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	}
}

func decodeEtcd(k string, leaves map[string]string) (Service, error) {
	s := Service{Labels: map[string]string{}}
	fail := func(leaf, format string, args ...any) (Service, error) {
		return Service{}, fmt.Errorf("%s leaf %s: %s", k, leaf, fmt.Sprintf(format, args...))
	}
	for _, leaf := range []string{"id", "display_name", "service_group", "version", "endpoint/address", "endpoint/port",
		"endpoint/protocol", "endpoint/prometheus_address", "health_status/registration_time", "health_status/last_heartbeat"} {
		if _, ok := leaves[leaf]; !ok {
			return fail(leaf, "missing")
		}
	}
	for leaf, v := range leaves {
		var err error
		switch leaf {
		case "id":
			s.ID = v
		case "display_name":
			s.DisplayName = v
		case "service_group":
			s.Group = v
		case "version":
			s.Version = v
		case "endpoint/address":
			s.Endpoint.Address = v
		case "endpoint/protocol":
			s.Endpoint.Protocol = v
		case "endpoint/prometheus_address":
			s.Endpoint.PrometheusAddress = v
		case "endpoint/port":
			s.Endpoint.Port, err = strconv.Atoi(v)
		case "health_status/registration_time":
			s.RegistrationTime, err = strconv.ParseFloat(v, 64)
		case "health_status/last_heartbeat":
			s.LastHeartbeat, err = strconv.ParseFloat(v, 64)
		default:
			name, ok := strings.CutPrefix(leaf, "labels/")
			if !ok || name == "" || strings.Contains(name, "/") {
				return fail(leaf, "not a leaf of ServiceMetadata")
			}
			s.Labels[name] = v
		}
		if err != nil {
			return fail(leaf, "%v", err)
		}
	}
	if want := s.Group + "/" + s.ID; k != want {
		return Service{}, fmt.Errorf("%s: its service_group and id say %s", k, want)
	}
	return s, validate(k, s)
}

// validate is what pydantic's ServiceMetadata checks beyond types, and what
// Prometheus needs of a target.
func validate(where string, s Service) error {
	switch {
	case !uuidPattern.MatchString(s.ID):
		return fmt.Errorf("%s: id %q is not a UUID", where, s.ID)
	case s.DisplayName == "" || s.Group == "" || s.Version == "":
		return fmt.Errorf("%s: display_name, service_group and version must not be empty", where)
	case s.Endpoint.Port < 1 || s.Endpoint.Port > 65535:
		return fmt.Errorf("%s: endpoint.port %d is not a port", where, s.Endpoint.Port)
	case s.Endpoint.Address == "" || s.Endpoint.Protocol == "":
		return fmt.Errorf("%s: endpoint.address and endpoint.protocol must not be empty", where)
	case s.RegistrationTime <= 0 || s.LastHeartbeat < s.RegistrationTime:
		return fmt.Errorf("%s: health_status %v/%v: registered after its last heartbeat, or never", where, s.RegistrationTime, s.LastHeartbeat)
	}
	if _, _, err := net.SplitHostPort(s.Endpoint.PrometheusAddress); err != nil {
		return fmt.Errorf("%s: endpoint.prometheus_address: %w", where, err)
	}
	return nil
}

func jsonString(raw string) (string, error) {
	var v string
	if !strings.HasPrefix(strings.TrimSpace(raw), `"`) {
		return "", fmt.Errorf("%s is not a JSON string", raw)
	}
	return v, json.Unmarshal([]byte(raw), &v)
}

func jsonInt(raw json.RawMessage) (int, error) {
	n, err := jsonNumber(raw)
	if err != nil {
		return 0, err
	}
	i, err := strconv.Atoi(n.String())
	if err != nil {
		return 0, fmt.Errorf("%s is not an integer", n)
	}
	return i, nil
}

func jsonFloat(raw json.RawMessage) (float64, error) {
	n, err := jsonNumber(raw)
	if err != nil {
		return 0, err
	}
	return n.Float64()
}

func jsonNumber(raw json.RawMessage) (json.Number, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return "", err
	}
	n, ok := v.(json.Number)
	if !ok {
		return "", fmt.Errorf("%s is not a JSON number", raw)
	}
	return n, nil
}

// decodeObject decodes a JSON object whose every field is known and present.
func decodeObject(raw string, fields map[string]func(json.RawMessage) error) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &obj); err != nil || obj == nil {
		return fmt.Errorf("%s is not a JSON object", raw)
	}
	for name, set := range fields {
		v, ok := obj[name]
		if !ok {
			return fmt.Errorf("%s missing", name)
		}
		if err := set(v); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	for name := range obj {
		if _, ok := fields[name]; !ok {
			return fmt.Errorf("%s is not a known field", name)
		}
	}
	return nil
}

func jsonLabels(raw string) (map[string]string, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("%s is not a JSON object", raw)
	}
	out := make(map[string]string, len(obj))
	for k, v := range obj {
		s, err := jsonString(string(v))
		if err != nil {
			return nil, fmt.Errorf("label %s: %w", k, err)
		}
		out[k] = s
	}
	return out, nil
}
