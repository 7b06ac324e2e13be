package watch

import "testing"

// An etcd restored from a snapshot keeps its cluster's ID and may answer at
// the term it had (by hand, etcd 3.4 restored a member at term 2 that had
// been at term 2, its raft index 64 down to 4): only the index tells.
func TestAHistoryContinuesOnlyForward(t *testing.T) {
	listed := history{cluster: 7, term: 2, index: 64}
	for _, tc := range []struct {
		now  history
		want bool
	}{
		{history{7, 2, 64}, true},
		{history{7, 3, 900}, true},
		{history{7, 2, 4}, false},   // restored from a snapshot
		{history{7, 1, 900}, false}, // a term back
		{history{8, 2, 900}, false}, // another cluster
		{history{}, false},          // the member did not answer
	} {
		if got := listed.continuedBy(tc.now); got != tc.want {
			t.Errorf("%+v continued by %+v: %v, want %v", listed, tc.now, got, tc.want)
		}
	}
	if (history{}).continuedBy(history{7, 2, 64}) {
		t.Error("a listing whose history was not told is continued")
	}
}
