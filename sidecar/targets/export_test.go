package targets

import "github.com/traefik-sd/traefik-sd/sidecar/dynamic"

// BuildOn makes b build on workers goroutines whatever the number of
// routers a change rebuilds (1: the serial path).
func BuildOn(b *Builder, workers int) *Builder {
	b.workers, b.parallelFrom = workers, 1
	return b
}

// Colliding makes every input of b's reader index hash alike, as if each
// collided with every other: what b builds and Readers answers must not
// change. Call it before the first Update.
func Colliding(b *Builder) *Builder {
	b.readers.key = func(dynamic.ObjectID) uint64 { return 0 }
	return b
}

// ReaderKeys is how many keys b's reader index holds.
func ReaderKeys(b *Builder) int { return len(b.readers.one) + len(b.readers.many) }

// Schemas is how many label schemas b's stored targets share.
func Schemas(b *Builder) int {
	b.schemas.mu.RLock()
	defer b.schemas.mu.RUnlock()
	return b.schemas.n
}

// LimitSchemas makes b share at most n schemas. Call it before the first Update.
func LimitSchemas(b *Builder, n int) *Builder {
	b.schemas.max = n
	return b
}

// CollidingSchemas makes every label schema of b hash alike. Call it
// before the first Update.
func CollidingSchemas(b *Builder) *Builder {
	b.schemas.alike = true
	return b
}

// Chunked makes b keep its routers' targets in chunks of n routers
// (chunkLen otherwise), so that a few routers span several chunks. Call it
// before the first Update.
func Chunked(b *Builder, n int) *Builder {
	b.rendered.chunk = n
	return b
}
