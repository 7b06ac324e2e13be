package targets

import (
	"crypto/sha256"
	"encoding/binary"
	"hash/maphash"
	"io"
	"runtime"
	"slices"
	"sort"

	"github.com/traefik-sd/traefik-sd/internal/fanout"
	"github.com/traefik-sd/traefik-sd/internal/shrink"
	"github.com/traefik-sd/traefik-sd/sidecar/dynamic"
)

// Builder keeps every router's targets and their rendered JSON between
// changes, so that a change costs the routers it touches: an etcd write to
// one circuit rebuilds one router, not ten thousand. Routers are keyed by
// their qualified name (name@provider; a TCP router's with TCPKey). Not
// safe for concurrent use; the engine owns it.
type Builder struct {
	opts    Options
	routers map[string]*routerTargets
	// readers maps each input (etcd object, live middleware, Traefik's
	// router) to the routers whose targets read it.
	readers readerIndex
	order   []string // names of routers with targets, sorted
	kept    int      // how many of order fit within MaxTargets
	reorder bool
	// overLabels counts targets left out for too many labels, per router.
	overLabels map[string]int
	static     []Target
	staticJSON []byte
	scratch    []byte // a router's JSON, for its size and sum
	// routed and mix are kept as routers change, so that a change costs
	// the routers it touches and not a walk of all of them: the number of
	// route targets, and the sum, lane by lane, of a hash of each router's
	// name and JSON sum (a digest of the set that needs no order).
	routed int
	mix    [4]uint64
	// rendered holds each router's targets in order, and at each router's
	// place in it, so that freezing the set shares a list instead of
	// looking up every router: at 100,000 circuits that walk was most of
	// a change's cost. A frozen set shares rendered's chunks; the next
	// change copies the chunk it writes first. inner is the sum of their
	// JSON sizes without brackets.
	rendered ownedList
	at       map[string]int
	inner    int
	// notServed holds the circuits Traefik does not serve, by router.
	notServed map[string]NotServed
	// held names the routers that left a server out waiting for the
	// coordinator (Inputs.HoldUnnamed).
	held map[string]bool
	// The most notServed and held held since they were last copied: both
	// hold every router at a start (shrink).
	notServedPeak, heldPeak int
	// schemas are the labels' names and common values that stored
	// targets share.
	schemas *schemas
	// workers and parallelFrom, when set, replace GOMAXPROCS and
	// parallelMin: the tests build on both paths.
	workers, parallelFrom int
}

// routerTargets is one router's part of the set. Its targets are never
// written to once stored (a change stores a new slice), so a frozen set
// can render them later. Their JSON is not kept: it was as large as the
// targets themselves, and only a body that someone asks for needs it.
type routerTargets struct {
	targets []storedTarget
	size    int               // of their JSON array, brackets included
	sum     [sha256.Size]byte // of their JSON array
	reads   []dynamic.ObjectID
}

// Changes says what changed since the last Update.
type Changes struct {
	// Objects changed in the store (decoded content, not just keys).
	Objects []dynamic.ObjectID
	// Services whose servers' health changed, as Traefik names them (name@provider).
	Services []string
	// Live names the traefik-sd middlewares (name@provider) whose live
	// configuration appeared, changed or went.
	Live []string
	// Routers names the routers (name@provider) whose state in Traefik changed.
	Routers []string
	// Circuits names the circuits whose ids or servers the coordinator's
	// answer changed. Held rebuilds the routers that held a server back
	// for that answer (Inputs.HoldUnnamed), now that it came.
	Circuits []string
	Held     bool
	// All rebuilds everything (first build, or a source that touches every router).
	All bool
}

// NewBuilder returns an empty builder.
func NewBuilder(opts Options) *Builder {
	static := staticTargets(opts)
	return &Builder{
		opts:       opts,
		routers:    map[string]*routerTargets{},
		readers:    newReaderIndex(),
		static:     static,
		staticJSON: AppendJSON(nil, static),
		overLabels: map[string]int{},
		notServed:  map[string]NotServed{},
		held:       map[string]bool{},
		at:         map[string]int{},
		schemas:    newSchemas(),
		rendered:   ownedList{chunk: chunkLen},
	}
}

// Update rebuilds the routers that the changes touch, and returns their
// names, sorted.
func (b *Builder) Update(in Inputs, ch Changes) []string {
	dirty := map[string]bool{}
	mark := func(id dynamic.ObjectID) {
		b.eachReader(id, func(r string) { dirty[r] = true })
	}
	defs := definitionsOf(b.opts, in)
	if ch.All {
		for name := range b.routers {
			dirty[name] = true
		}
		for _, name := range defs.routers() {
			dirty[name] = true
		}
	}
	for _, id := range ch.Objects {
		switch id.Kind {
		case dynamic.Routers:
			dirty[id.Name+"@"+b.opts.Provider] = true
		case dynamic.TCPRouters:
			dirty[tcpPrefix+id.Name+"@"+b.opts.Provider] = true
		}
		mark(id)
	}
	// Health and live middlewares are named qualified; routers read them
	// as their definitions hold them.
	for _, svc := range ch.Services {
		mark(defs.input(dynamic.Services, svc))
	}
	for _, m := range ch.Live {
		mark(defs.input(dynamic.Middlewares, m))
	}
	for _, r := range ch.Routers {
		dirty[r] = true // keyed by its own name, as the builder keys routers
	}
	for _, c := range ch.Circuits {
		mark(dynamic.ObjectID{Kind: readRoutes, Name: c})
	}
	if ch.Held {
		for r := range b.held {
			dirty[r] = true
		}
	}
	names := make([]string, 0, len(dirty))
	for name := range dirty {
		names = append(names, name)
	}
	sort.Strings(names)
	b.build(in, defs, names)
	b.notServed = shrink.Map(b.notServed, &b.notServedPeak)
	b.held = shrink.Map(b.held, &b.heldPeak)
	if b.reorder {
		b.order = b.order[:0]
		for name, rt := range b.routers {
			if len(rt.targets) > 0 {
				b.order = append(b.order, name)
			}
		}
		sort.Strings(b.order)
		b.reorder = false
		b.index()
	} else {
		for _, name := range names {
			if i, ok := b.at[name]; ok {
				b.rendered.set(i, b.routers[name].targets)
			}
		}
	}
	b.kept = len(b.order)
	// Walking every router to find the cut-off cost a change at 100,000
	// circuits more than the change itself; routed is their sum already.
	if b.opts.MaxTargets > 0 && b.routed > b.opts.MaxTargets {
		total := 0
		for i, name := range b.order {
			total += len(b.routers[name].targets)
			if total > b.opts.MaxTargets {
				b.kept = i
				break
			}
		}
	}
	return names
}

// Circuits lists the circuits whose coordinator routes the named routers
// read, sorted: what to ask the coordinator about after they changed.
func (b *Builder) Circuits(routers []string) []string {
	var out []string
	for _, name := range routers {
		if rt := b.routers[name]; rt != nil {
			for _, id := range rt.reads {
				if id.Kind == readRoutes {
					out = append(out, id.Name)
				}
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
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

// parallelMin is the fewest routers built on more than one core. A change
// rebuilds a handful; a first listing, the plugin's first full set or the
// coordinator's first answer rebuilds every router, which at 100,000
// circuits took seconds on one core while the other waited.
const parallelMin = 256

// build rebuilds the named routers: each router's targets are made side by
// side (they read the inputs and write nothing shared), then stored in
// order, one at a time.
func (b *Builder) build(in Inputs, defs definitions, names []string) {
	workers := b.workers
	if workers == 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	least := b.parallelFrom
	if least == 0 {
		least = parallelMin
	}
	if workers < 2 || len(names) < least {
		for _, name := range names {
			old := b.routers[name]
			b.store(name, old, b.buildOne(in, defs, name, old, &b.scratch))
		}
		return
	}
	results := make([]built, len(names))
	fanout.Each(len(names), workers, func() func(int) {
		var scratch []byte
		return func(i int) { results[i] = b.buildOne(in, defs, names[i], b.routers[names[i]], &scratch) }
	})
	for i, name := range names {
		b.store(name, b.routers[name], results[i])
	}
}

// built is one router's targets as made, before they are stored.
type built struct {
	rt         routerTargets
	exists     bool
	held       bool
	notServed  *NotServed
	overLabels int
}

// buildOne builds one router's targets from the inputs. It reads the builder
// and writes nothing of it, so that workers can run it side by side; its
// JSON is rendered into scratch, the caller's own.
func (b *Builder) buildOne(in Inputs, defs definitions, name string, old *routerTargets, scratch *[]byte) built {
	bl := &builder{opts: b.opts, in: in, defs: defs}
	if old != nil {
		bl.before = old.targets
	}
	ts := Normalize(bl.router(nil, name))
	out := built{exists: bl.exists, held: bl.held, notServed: bl.notServed}
	if !bl.exists {
		return out
	}
	if b.opts.MaxLabels > 0 {
		kept := ts[:0]
		for _, t := range ts {
			if len(t.Labels) > b.opts.MaxLabels {
				out.overLabels++
				continue
			}
			kept = append(kept, t)
		}
		ts = kept
	}
	// Kept at their exact size: grown by appending, their slack was a
	// fifth of them.
	out.rt = routerTargets{targets: b.schemas.store(ts), reads: slices.Clone(bl.reads)}
	if len(ts) > 0 {
		*scratch = AppendJSON((*scratch)[:0], ts)
		out.rt.size, out.rt.sum = len(*scratch), sha256.Sum256(*scratch)
	}
	return out
}

// store replaces a router's targets (old, nil if it had none) with a build
// of them.
func (b *Builder) store(name string, old *routerTargets, r built) {
	// A rebuild that read the same inputs as before (every router, when
	// the plugin's first set makes them live) leaves the index as it was.
	sameReads := old != nil && r.exists && slices.Equal(old.reads, r.rt.reads)
	if old != nil && !sameReads {
		for _, id := range old.reads {
			b.readers.remove(id, name)
		}
	}
	delete(b.overLabels, name)
	delete(b.notServed, name)
	delete(b.held, name)
	if r.held {
		b.held[name] = true
	}
	if r.notServed != nil {
		b.notServed[name] = *r.notServed
	}
	if old != nil && len(old.targets) > 0 {
		b.routed -= len(old.targets)
		b.inner -= old.size - 2
		b.mixIn(name, old.sum, false)
	}
	if !r.exists {
		// Its source no longer holds it: forget it.
		if old != nil {
			delete(b.routers, name)
			b.reorder = b.reorder || len(old.targets) > 0
		}
		return
	}
	if r.overLabels > 0 {
		b.overLabels[name] = r.overLabels
	}
	// A copy, so that the router holds its targets and not the whole build.
	rt := new(routerTargets)
	*rt = r.rt
	if len(rt.targets) > 0 {
		b.routed += len(rt.targets)
		b.inner += rt.size - 2
		b.mixIn(name, rt.sum, true)
	}
	if !sameReads {
		for _, id := range rt.reads {
			b.readers.add(id, name)
		}
	}
	b.routers[name] = rt
	if (old == nil || len(old.targets) == 0) != (len(rt.targets) == 0) {
		b.reorder = true
	}
}

// index places every router of order in rendered, after order changed.
func (b *Builder) index() {
	b.at = make(map[string]int, len(b.order))
	b.rendered.reset(len(b.order))
	for i, name := range b.order {
		b.at[name] = i
		b.rendered.set(i, b.routers[name].targets)
	}
}

// Targets returns the current set: route targets by router, then the
// static ones. It makes every target; Each does not.
func (b *Builder) Targets() []Target {
	return (&Frozen{routers: b.rendered.prefix(b.kept), static: b.static}).Targets()
}

// Each calls fn with each target of the current set, in the order Targets
// lists them, without making them all at once: fn must not keep a
// target's Labels, which the next target reuses. At 200,000 targets the
// whole set made is about 80 MB.
func (b *Builder) Each(fn func(Target)) {
	var labels []Label
	for ts := range b.rendered.prefix(b.kept).all() {
		for i := range ts {
			labels = ts[i].appendLabels(labels[:0])
			fn(Target{Address: ts[i].address, Labels: labels})
		}
	}
	for _, t := range b.static {
		fn(t)
	}
}

// AppendJSON appends the whole set as HTTP SD JSON: each kept router's
// targets in order, then the static targets.
func (b *Builder) AppendJSON(dst []byte) []byte { return b.Freeze().AppendJSON(dst) }

// Freeze captures the current set to render later: the kept routers'
// target slices, which later changes replace and never write to.
func (b *Builder) Freeze() *Frozen {
	// Each piece's JSON without its brackets, a comma between pieces, and
	// the brackets around them all.
	f := &Frozen{routers: b.rendered.share().prefix(b.kept), static: b.static}
	pieces, inner := len(b.order), b.inner
	if b.kept < len(b.order) {
		pieces, inner = 0, 0
		for _, name := range b.order[:b.kept] {
			pieces, inner = pieces+1, inner+b.routers[name].size-2
		}
	}
	if len(b.static) > 0 {
		pieces, inner = pieces+1, inner+len(b.staticJSON)-2
	}
	f.size = 2 + inner + max(pieces-1, 0)
	return f
}

// Frozen is the set at one moment, rendered on demand.
type Frozen struct {
	routers routerList
	static  []Target
	size    int
}

// Targets makes the frozen set's targets: route targets by router, then
// the static ones.
func (f *Frozen) Targets() []Target {
	n := len(f.static)
	for ts := range f.routers.all() {
		n += len(ts)
	}
	out := make([]Target, 0, n)
	for ts := range f.routers.all() {
		for i := range ts {
			out = append(out, ts[i].target())
		}
	}
	return append(out, f.static...)
}

// Size is the length AppendJSON will append, known without rendering.
func (f *Frozen) Size() int { return f.size }

// AppendJSON appends the set as HTTP SD JSON, growing dst once to the
// exact size: growing megabytes by doubling leaves garbage behind.
func (f *Frozen) AppendJSON(dst []byte) []byte {
	dst, _ = f.render(slices.Grow(dst, f.size), nil)
	return dst
}

// WriteJSON writes what AppendJSON appends, through a buffer of a few tens
// of kilobytes: a compressor fed this way never needs the whole body.
func (f *Frozen) WriteJSON(w io.Writer) error {
	buf, err := f.render(make([]byte, 0, 2*spillAt), func(b []byte) error {
		_, err := w.Write(b)
		return err
	})
	if err != nil {
		return err
	}
	_, err = w.Write(buf)
	return err
}

// spillAt is how full render lets its buffer get before it spills it.
const spillAt = 32 << 10

// render appends the set to dst. With spill, whenever dst holds spillAt
// bytes or more it hands them to spill and goes on from empty; what is
// left at the end is returned.
func (f *Frozen) render(dst []byte, spill func([]byte) error) ([]byte, error) {
	dst = append(dst, '[')
	n := 0
	for ts := range f.routers.all() {
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = appendStored(dst, ts)
		n++
		if spill != nil && len(dst) >= spillAt {
			if err := spill(dst); err != nil {
				return nil, err
			}
			dst = dst[:0]
		}
	}
	if len(f.static) > 0 {
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = appendElements(dst, f.static)
	}
	return append(dst, ']'), nil
}

// Digest identifies the body AppendJSON would give: a hash of each
// router's piece digest in order and of the static targets. It costs a hash
// over 32 bytes per router, not over the whole body.
func (b *Builder) Digest() [sha256.Size]byte {
	h := sha256.New()
	if b.kept == len(b.order) {
		// Every router is in the body: the kept mix identifies it, as the
		// body is the routers' JSON in name order. At 100,000 circuits the
		// walk below was a tenth of every change.
		var lanes [32]byte
		for i, x := range b.mix {
			binary.LittleEndian.PutUint64(lanes[8*i:], x)
		}
		h.Write(lanes[:])
	} else {
		for _, name := range b.order[:b.kept] {
			h.Write([]byte(name))
			h.Write(b.routers[name].sum[:])
		}
	}
	h.Write(b.staticJSON)
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}

// Groups counts the current targets per service group.
func (b *Builder) Groups() map[string]int {
	g := map[string]int{}
	if b.kept == len(b.order) {
		g[GroupRoute] = b.routed
	} else {
		for _, name := range b.order[:b.kept] {
			g[GroupRoute] += len(b.routers[name].targets)
		}
	}
	for _, t := range b.static {
		g[t.Label("service_group")]++
	}
	return g
}

// NotServed lists the circuits left out because Traefik does not serve
// them, by router name.
func (b *Builder) NotServed() map[string]NotServed { return b.notServed }

// Readers lists the routers whose targets read an etcd object, sorted.
func (b *Builder) Readers(id dynamic.ObjectID) []string {
	var out []string
	b.eachReader(id, func(r string) { out = append(out, r) })
	sort.Strings(out)
	return out
}

// mixIn adds or takes out one router's part of the mix.
func (b *Builder) mixIn(name string, sum [sha256.Size]byte, add bool) {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write(sum[:])
	var d [sha256.Size]byte
	h.Sum(d[:0])
	for i := range b.mix {
		if x := binary.LittleEndian.Uint64(d[8*i:]); add {
			b.mix[i] += x
		} else {
			b.mix[i] -= x
		}
	}
}

// readerIndex maps each input to the routers that read it. Nearly every
// input has one reader (a circuit's own service and middlewares): its name
// sits in one map, and only an input a second router reads (CORSHeaders)
// gets a readerSet, in the other. A set for every input took about 90
// bytes an input, five inputs a circuit.
//
// Inputs are keyed by a hash of their kind and name, not by the two
// strings: a slot of 24 bytes instead of 48, at about five inputs a
// circuit. Two inputs whose hashes collide share a key, so each can name a
// router that reads the other and not this one; the Builder keeps only
// those whose own reads hold the input (eachReader). A router's reads are
// all removed before its new ones are added (store), so a key names it
// exactly while one of its reads hashes to it.
type readerIndex struct {
	key  func(dynamic.ObjectID) uint64 // this process's seed: a collision cannot be aimed at
	one  map[uint64]string
	many map[uint64]*readerSet
}

func newReaderIndex() readerIndex {
	seed := maphash.MakeSeed()
	return readerIndex{key: func(id dynamic.ObjectID) uint64 { return maphash.Comparable(seed, id) },
		one: map[uint64]string{}, many: map[uint64]*readerSet{}}
}

func (x readerIndex) add(id dynamic.ObjectID, name string) {
	k := x.key(id)
	if rs := x.many[k]; rs != nil {
		rs.add(name)
		return
	}
	r, ok := x.one[k]
	switch {
	case !ok:
		x.one[k] = name
	case r != name:
		delete(x.one, k)
		rs := &readerSet{}
		rs.add(r)
		rs.add(name)
		x.many[k] = rs
	}
}

func (x readerIndex) remove(id dynamic.ObjectID, name string) {
	k := x.key(id)
	if rs := x.many[k]; rs != nil {
		if rs.remove(name) {
			delete(x.many, k)
		}
		return
	}
	if r, ok := x.one[k]; ok && r == name {
		delete(x.one, k)
	}
}

// each calls f with every router that may read id: those that do, and
// any that read an input whose hash is id's.
func (x readerIndex) each(id dynamic.ObjectID, f func(string)) {
	k := x.key(id)
	if r, ok := x.one[k]; ok {
		f(r)
		return
	}
	x.many[k].each(f)
}

// eachReader calls f with every router whose targets read id.
func (b *Builder) eachReader(id dynamic.ObjectID, f func(string)) {
	b.readers.each(id, func(r string) {
		if rt := b.routers[r]; rt != nil && slices.Contains(rt.reads, id) {
			f(r)
		}
	})
}

// readerSet is the routers that read one input. Almost every input has one
// reader (a circuit's own router, service and middlewares), so a few names
// sit in a slice, and only an input shared by many routers gets a map: a map
// per input was a kilobyte per circuit.
type readerSet struct {
	few  []string
	many map[string]bool
}

const fewReaders = 8

func (rs *readerSet) add(name string) {
	if rs.many != nil {
		rs.many[name] = true
		return
	}
	if slices.Contains(rs.few, name) {
		return
	}
	if len(rs.few) < fewReaders {
		rs.few = append(rs.few, name)
		return
	}
	rs.many = make(map[string]bool, 2*fewReaders)
	for _, r := range rs.few {
		rs.many[r] = true
	}
	rs.many[name] = true
	rs.few = nil
}

// remove reports whether the set is empty afterwards.
func (rs *readerSet) remove(name string) bool {
	if rs.many != nil {
		delete(rs.many, name)
		return len(rs.many) == 0
	}
	if i := slices.Index(rs.few, name); i >= 0 {
		rs.few = slices.Delete(rs.few, i, i+1)
	}
	return len(rs.few) == 0
}

func (rs *readerSet) each(f func(string)) {
	if rs == nil {
		return
	}
	for _, r := range rs.few {
		f(r)
	}
	for r := range rs.many {
		f(r)
	}
}
