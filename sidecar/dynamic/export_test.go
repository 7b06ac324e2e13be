package dynamic

// Dirty is how many objects the next Commit will decode again.
func (s *Store) Dirty() int { return len(s.dirty) }
