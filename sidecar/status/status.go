// Package status renders the sidecar's state as one HTML page for a person:
// what is published, since when, and why anything etcd holds is not. The
// daemon builds a Snapshot on request, on the server's goroutines, and the
// page is rendered from it there.
package status

import (
	"html/template"
	"io"
	"sort"
	"time"
)

// Target is one published target.
type Target struct {
	Address string
	Labels  [][2]string // name, value; sorted by name
	Since   time.Time   // first seen in the set
}

// Circuit is the route targets of one circuit.
type Circuit struct {
	ID      string
	Targets []Target
}

// Group is one service_group of the published set.
type Group struct {
	Name     string
	Targets  []Target  // for the groups other than routes
	Circuits []Circuit // for the route group
}

// Node is a Traefik process whose plugin pushes.
type Node struct {
	Name, Boot string
	LastSeen   time.Time
}

// NotServed is a circuit etcd holds that is not published.
type NotServed struct {
	Circuit, Router, Reason, Error string
}

// Broken is an etcd object that cannot be decoded.
type Broken struct {
	Key, Error string
}

// Snapshot is the state shown.
type Snapshot struct {
	At            time.Time
	Authority     string
	Node          string
	Version       string
	Ready         bool
	EtcdMode      bool
	EtcdRevision  int64
	EtcdWatchUp   bool
	EtcdContact   time.Time
	Groups        []Group
	Nodes         []Node
	NotServed     []NotServed
	Broken        []Broken
	DownServers   []string
	TraefikScrape time.Time
}

// Since says how long ago t was, for a person.
func Since(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t).Round(time.Second)
	if d < time.Second {
		return "just now"
	}
	return d.String() + " ago"
}

var page = template.Must(template.New("status").Funcs(template.FuncMap{
	"since": func(s *Snapshot, t time.Time) string { return Since(s.At, t) },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>traefik-sd · {{.Authority}} · {{.Node}}</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:72rem;padding:.75rem;color:#1b1f24}
h1{font-size:1.3rem;margin:.2rem 0}h2{font-size:1.1rem;margin:1.2rem 0 .4rem;border-bottom:1px solid #ddd}
h3{font-size:.95rem;margin:.8rem 0 .3rem;font-family:ui-monospace,monospace;word-break:break-all}
.ok{color:#0a7f3f}.bad{color:#b3261e}.muted{color:#666}
table{border-collapse:collapse;width:100%;font-size:.9rem}td,th{text-align:left;padding:.25rem .4rem;border-bottom:1px solid #eee;vertical-align:top}
code,.mono{font-family:ui-monospace,monospace;word-break:break-all}
.label{display:inline-block;background:#f1f3f5;border-radius:.3rem;padding:0 .3rem;margin:.1rem;font-size:.8rem;font-family:ui-monospace,monospace;word-break:break-all}
.facts{display:grid;grid-template-columns:repeat(auto-fit,minmax(13rem,1fr));gap:.4rem}
.fact{background:#f8f9fa;border-radius:.4rem;padding:.4rem .6rem}
</style></head><body>
<h1>traefik-sd · worker <code>{{.Authority}}</code> · node <code>{{.Node}}</code></h1>
<p class="muted">{{.Version}} · rendered {{.At.UTC.Format "2006-01-02 15:04:05"}} UTC · {{if .Ready}}<span class="ok">serving</span>{{else}}<span class="bad">not ready: /v1/targets answers 503</span>{{end}}</p>
<div class="facts">
{{if .EtcdMode}}<div class="fact">etcd watch: {{if .EtcdWatchUp}}<span class="ok">up</span>{{else}}<span class="bad">down</span>{{end}}<br>revision <span class="mono">{{.EtcdRevision}}</span>, last contact {{since . .EtcdContact}}</div>{{else}}<div class="fact">no etcd: from the plugin's pushes and Traefik's API</div>{{end}}
<div class="fact">Traefik /metrics: read {{since . .TraefikScrape}}<br>{{len .DownServers}} servers reported down</div>
<div class="fact">plugin: {{len .Nodes}} Traefik process{{if ne (len .Nodes) 1}}es{{end}} pushing</div>
<div class="fact">{{len .NotServed}} circuits not served · {{len .Broken}} broken objects</div>
</div>

<h2>Published targets</h2>
{{range .Groups}}{{$g := .}}
<h3>{{.Name}}</h3>
{{if .Circuits}}{{range .Circuits}}
<p><b>circuit</b> <code id="circuit-{{.ID}}">{{.ID}}</code></p>
<table><tr><th>target</th><th>labels</th><th>since</th></tr>
{{range .Targets}}<tr><td class="mono">{{.Address}}</td><td>{{range .Labels}}<span class="label">{{index . 0}}={{index . 1}}</span>{{end}}</td><td>{{since $ .Since}}</td></tr>{{end}}
</table>{{end}}
{{else}}<table><tr><th>target</th><th>labels</th><th>since</th></tr>
{{range .Targets}}<tr><td class="mono">{{.Address}}</td><td>{{range .Labels}}<span class="label">{{index . 0}}={{index . 1}}</span>{{end}}</td><td>{{since $ .Since}}</td></tr>{{end}}
</table>{{end}}
{{else}}<p class="muted">nothing published yet</p>{{end}}

<h2>Traefik processes whose plugin pushes</h2>
{{if .Nodes}}<table><tr><th>node</th><th>boot</th><th>last push or heartbeat</th></tr>
{{range .Nodes}}<tr><td class="mono">{{.Name}}</td><td class="mono">{{.Boot}}</td><td>{{since $ .LastSeen}}</td></tr>{{end}}</table>
{{else}}<p class="bad">none: no traefik-sd circuit can be published</p>{{end}}

<h2>In etcd, not served by Traefik</h2>
{{if .NotServed}}<table><tr><th>circuit</th><th>router</th><th>why</th></tr>
{{range .NotServed}}<tr><td class="mono">{{.Circuit}}</td><td class="mono">{{.Router}}</td><td>{{.Reason}}{{if .Error}}: {{.Error}}{{end}}</td></tr>{{end}}</table>
{{else}}<p class="ok">none</p>{{end}}

<h2>Objects that cannot be decoded</h2>
{{if .Broken}}<table><tr><th>key</th><th>error</th></tr>
{{range .Broken}}<tr><td class="mono">{{.Key}}</td><td>{{.Error}}</td></tr>{{end}}</table>
{{else}}<p class="ok">none</p>{{end}}

{{if .DownServers}}<h2>Servers Traefik reports down (withdrawn)</h2>
<table>{{range .DownServers}}<tr><td class="mono">{{.}}</td></tr>{{end}}</table>{{end}}
</body></html>
`))

// Render writes the page.
func Render(w io.Writer, s *Snapshot) error {
	sort.Slice(s.Groups, func(i, j int) bool { return s.Groups[i].Name < s.Groups[j].Name })
	return page.Execute(w, s)
}
