package watch

import (
	"bytes"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// FuzzParseRange holds the page reader to protobuf's own decoding of a
// RangeResponse (the oracle): whatever protobuf accepts, parse accepts and
// reads the same revision, keys, values, more and count; whatever protobuf
// refuses, parse refuses.
func FuzzParseRange(f *testing.F) {
	seed := func(m *pb.RangeResponse) {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(&pb.RangeResponse{})
	seed(&pb.RangeResponse{Header: &pb.ResponseHeader{ClusterId: 7, MemberId: 9, Revision: 1234, RaftTerm: 3}, More: true, Count: 50001,
		Kvs: []*mvccpb.KeyValue{
			{Key: []byte("traefik/worker_w/http/routers/r/rule"), Value: []byte("Host(`a`)"), CreateRevision: 5, ModRevision: 6, Version: 2, Lease: 99},
			{Key: []byte("k"), Value: nil},
			{Key: nil, Value: []byte("v")},
		}})
	f.Add([]byte{0x0a, 0x02, 0x18})       // a header cut in its revision
	f.Add([]byte{0x12, 0x04, 0x0a, 0x05}) // a key longer than its message
	f.Add([]byte{0x00})                   // field number 0
	f.Add([]byte{0x0b, 0x0c})             // an empty group
	f.Fuzz(func(t *testing.T, b []byte) {
		var want pb.RangeResponse
		wantErr := proto.Unmarshal(b, &want)
		got := rangePage{buf: b}
		err := got.parse()
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("parse error %v, protobuf's %v", err, wantErr)
		}
		if err != nil {
			return
		}
		if got.revision != want.GetHeader().GetRevision() || got.more != want.More || got.count != want.Count || len(got.kvs) != len(want.Kvs) {
			t.Fatalf("parsed revision %d more %v count %d with %d keys; protobuf: %d %v %d %d",
				got.revision, got.more, got.count, len(got.kvs), want.GetHeader().GetRevision(), want.More, want.Count, len(want.Kvs))
		}
		for i, kv := range want.Kvs {
			if !bytes.Equal(got.kvs[i].key, kv.Key) || !bytes.Equal(got.kvs[i].value, kv.Value) {
				t.Fatalf("kvs[%d]: parsed %q=%q, protobuf %q=%q", i, got.kvs[i].key, got.kvs[i].value, kv.Key, kv.Value)
			}
		}
	})
}

// TestAPageIsParsedInOneAllocation: a page's keys are slices of its buffer
// and their slice is allocated at its size, not grown: a re-list of
// millions of keys is otherwise mostly the garbage of growing it.
func TestAPageIsParsedInOneAllocation(t *testing.T) {
	m := &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: 9}, More: true, Count: 5000}
	for i := 0; i < 1000; i++ {
		m.Kvs = append(m.Kvs, &mvccpb.KeyValue{Key: []byte("traefik/worker_w/http/routers/r/rule"), Value: []byte("Host(`a`)"), ModRevision: int64(i)})
	}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var p rangePage
	allocs := testing.AllocsPerRun(10, func() {
		p = rangePage{buf: b}
		if err := p.parse(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 1 || len(p.kvs) != 1000 || cap(p.kvs) != 1000 {
		t.Fatalf("parsing a page of 1000 keys: %v allocations, %d keys in a slice of %d; want 1, 1000, 1000", allocs, len(p.kvs), cap(p.kvs))
	}
	// Read into a released page, it allocates nothing.
	allocs = testing.AllocsPerRun(10, func() {
		p = rangePage{buf: b, kvs: p.kvs[:0]}
		if err := p.parse(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 || len(p.kvs) != 1000 {
		t.Fatalf("parsing a page of 1000 keys into a released page: %v allocations, %d keys; want 0, 1000", allocs, len(p.kvs))
	}
}
