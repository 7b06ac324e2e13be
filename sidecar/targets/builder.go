package targets

import (
	"crypto/sha256"
	"slices"
	"sort"
	"strings"

	"github.com/traefik-sd/traefik-sd/sidecar/dynamic"
)

// Builder keeps every router's targets and their rendered JSON between
// changes, so that a change costs the routers it touches: an etcd write to
// one circuit rebuilds one router, not ten thousand. Not safe for concurrent
// use; the daemon's loop owns it.
type Builder struct {
	opts    Options
	routers map[string]*routerTargets
	// readers maps each object to the routers whose targets read it.
	readers map[dynamic.ObjectID]map[string]bool
	order   []string // names of routers with targets, sorted
	kept    int      // how many of order fit within MaxTargets
	reorder bool
	// overLabels counts targets left out for too many labels, per router.
	overLabels map[string]int
	static     []Target
	render     func(dst []byte, ts []Target) []byte
}

type routerTargets struct {
	targets []Target
	json    []byte
	sum     [sha256.Size]byte // of json
	reads   []dynamic.ObjectID
}

// Changes says what changed since the last Update.
type Changes struct {
	// Objects changed in the store (decoded content, not just keys).
	Objects []dynamic.ObjectID
	// Services whose servers' health changed, as Traefik names them (name@provider).
	Services []string
	// All rebuilds everything (first build, or a source that touches every router).
	All bool
}

// NewBuilder returns an empty builder.
func NewBuilder(opts Options) *Builder {
	return &Builder{
		opts:       opts,
		routers:    map[string]*routerTargets{},
		readers:    map[dynamic.ObjectID]map[string]bool{},
		static:     staticTargets(opts),
		overLabels: map[string]int{},
	}
}

// SetRenderer sets how each router's targets are rendered and kept (the
// publisher's JSON); AppendJSON then joins the kept pieces.
func (b *Builder) SetRenderer(render func(dst []byte, ts []Target) []byte) { b.render = render }

// Update rebuilds the routers that the changes touch. It returns how many it rebuilt.
func (b *Builder) Update(store *dynamic.Store, health Health, routes RouteInfo, ch Changes) int {
	dirty := map[string]bool{}
	if ch.All {
		for name := range b.routers {
			dirty[name] = true
		}
		for name := range store.Routers {
			dirty[name] = true
		}
	}
	for _, id := range ch.Objects {
		if id.Kind == dynamic.Routers {
			dirty[id.Name] = true
		}
		for r := range b.readers[id] {
			dirty[r] = true
		}
	}
	for _, svc := range ch.Services {
		name, provider, _ := strings.Cut(svc, "@")
		if provider != b.opts.Provider {
			continue
		}
		for r := range b.readers[dynamic.ObjectID{Kind: dynamic.Services, Name: name}] {
			dirty[r] = true
		}
	}
	for name := range dirty {
		b.rebuild(store, health, routes, name)
	}
	if b.reorder {
		b.order = b.order[:0]
		for name, rt := range b.routers {
			if len(rt.targets) > 0 {
				b.order = append(b.order, name)
			}
		}
		sort.Strings(b.order)
		b.reorder = false
	}
	b.kept = len(b.order)
	if b.opts.MaxTargets > 0 {
		total := 0
		for i, name := range b.order {
			total += len(b.routers[name].targets)
			if total > b.opts.MaxTargets {
				b.kept = i
				break
			}
		}
	}
	return len(dirty)
}

// Dropped says how many targets are left out by each limit ("targets", "labels").
func (b *Builder) Dropped() map[string]int {
	d := map[string]int{"targets": 0, "labels": 0}
	for _, name := range b.order[b.kept:] {
		d["targets"] += len(b.routers[name].targets)
	}
	for _, n := range b.overLabels {
		d["labels"] += n
	}
	return d
}

func (b *Builder) rebuild(store *dynamic.Store, health Health, routes RouteInfo, name string) {
	old := b.routers[name]
	if old != nil {
		for _, id := range old.reads {
			delete(b.readers[id], name)
			if len(b.readers[id]) == 0 {
				delete(b.readers, id)
			}
		}
	}
	r := store.Routers[name]
	if r == nil {
		delete(b.overLabels, name)
		if old != nil {
			delete(b.routers, name)
			b.reorder = b.reorder || len(old.targets) > 0
		}
		return
	}
	bl := &builder{opts: b.opts, store: store, health: health, routes: routes}
	ts := Normalize(bl.router(nil, name, r))
	delete(b.overLabels, name)
	if b.opts.MaxLabels > 0 {
		kept := ts[:0]
		for _, t := range ts {
			if len(t.Labels) > b.opts.MaxLabels {
				b.overLabels[name]++
				continue
			}
			kept = append(kept, t)
		}
		ts = kept
	}
	rt := &routerTargets{targets: ts, reads: bl.reads}
	if b.render != nil && len(rt.targets) > 0 {
		rt.json = b.render(nil, rt.targets)
		rt.sum = sha256.Sum256(rt.json)
	}
	for _, id := range rt.reads {
		if b.readers[id] == nil {
			b.readers[id] = map[string]bool{}
		}
		b.readers[id][name] = true
	}
	b.routers[name] = rt
	if (old == nil || len(old.targets) == 0) != (len(rt.targets) == 0) {
		b.reorder = true
	}
}

// Targets returns the current set: route targets by router, then the static ones.
func (b *Builder) Targets() []Target {
	var out []Target
	for _, name := range b.order[:b.kept] {
		out = append(out, b.routers[name].targets...)
	}
	return append(out, b.static...)
}

// AppendJSON appends the whole set as rendered by the renderer: the kept
// pieces of each router joined in order, then the static targets.
func (b *Builder) AppendJSON(dst []byte) []byte {
	// One allocation of the exact size: growing megabytes by doubling
	// leaves garbage that the collector then charges to the change path.
	size := 2
	for _, name := range b.order[:b.kept] {
		size += len(b.routers[name].json)
	}
	static := b.render(nil, b.static)
	dst = slices.Grow(dst, size+len(static))
	dst = append(dst, '[')
	n := 0
	for _, name := range b.order[:b.kept] {
		if n > 0 {
			dst = append(dst, ',')
		}
		piece := b.routers[name].json
		dst = append(dst, piece[1:len(piece)-1]...) // without its brackets
		n++
	}
	if len(b.static) > 0 {
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, static[1:len(static)-1]...)
	}
	return append(dst, ']')
}

// Digest identifies the body AppendJSON would give: a hash of each
// router's piece digest in order and of the static targets. It costs a hash
// over 32 bytes per router, not over the whole body.
func (b *Builder) Digest() [sha256.Size]byte {
	h := sha256.New()
	for _, name := range b.order[:b.kept] {
		h.Write(b.routers[name].sum[:])
	}
	h.Write(b.render(nil, b.static))
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}

// Groups counts the current targets per service group.
func (b *Builder) Groups() map[string]int {
	g := map[string]int{}
	for _, name := range b.order[:b.kept] {
		g[GroupRoute] += len(b.routers[name].targets)
	}
	for _, t := range b.static {
		g[t.Label("service_group")]++
	}
	return g
}
