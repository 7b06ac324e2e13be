package watch

import "sync/atomic"

// A re-list of 2 million keys reads some 330 MB of pages, all of it garbage
// once compared, for which the collector marks the whole state held (about
// a gigabyte) again: that was most of a re-list's CPU. So the pages
// a consumer has applied (Batch.Release) are read into again. The pool is
// the listing's own: once the listing is applied it is garbage, and nothing
// is held at rest.
type pagePool struct{ free chan *rangePage }

// freePages bounds the released pages kept: a listing has about as many
// in flight (read, queued, emitted, being applied).
const freePages = 4

func newPagePool() *pagePool { return &pagePool{free: make(chan *rangePage, freePages)} }

func (pp *pagePool) get() *rangePage {
	select {
	case p := <-pp.free:
		return p
	default:
		return &rangePage{}
	}
}

// release returns the memory of the batch made from p. The buffer is
// zeroed: a key kept past Release by mistake reads as zeros at once, not
// as some later page's key.
func (pp *pagePool) release(p *rangePage) func() {
	var done atomic.Bool
	return func() {
		if !done.CompareAndSwap(false, true) {
			return
		}
		clear(p.buf[:cap(p.buf)])
		select {
		case pp.free <- p:
		default:
		}
	}
}
