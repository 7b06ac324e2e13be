package dynamic

import "slices"

// ParallelMin is the fewest changed objects Commit decodes in parallel.
const ParallelMin = parallelMin

// CommitWith is Commit with its worker count and threshold chosen: one
// worker is the serial decode that the parallel one must match.
func (s *Store) CommitWith(workers, threshold int) ([]ObjectID, []error) {
	return s.commit(workers, threshold)
}

// Dirty is how many objects the next Commit will decode again.
func (s *Store) Dirty() int { return len(s.dirty) }

// DecodeAheadFrom sets the fewest objects a listing's pages decode ahead.
func (s *Store) DecodeAheadFrom(n int) { s.aheadMin = n }

// Ahead is how many objects are decoded ahead of the next Commit.
func (s *Store) Ahead() int { return len(s.ahead) }

// Keys is every key held, as its object names it, with its value as held
// (a digest included), sorted.
func (s *Store) Keys() []string {
	var out []string
	for id, obj := range s.raw {
		for k, v := range obj.all(&s.keys) {
			out = append(out, id.String()+"/"+k+" = "+v.s)
		}
	}
	slices.Sort(out)
	return out
}
