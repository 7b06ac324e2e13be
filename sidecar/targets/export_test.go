package targets

// BuildOn makes b build on workers goroutines whatever the number of
// routers a change rebuilds (1: the serial path).
func BuildOn(b *Builder, workers int) *Builder {
	b.workers, b.parallelFrom = workers, 1
	return b
}
