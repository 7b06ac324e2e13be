package watch

import (
	"context"
	"errors"
	"fmt"
	"math"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// A listing's pages are read raw: the etcd client decodes each key of a
// response into a struct and two byte slices of its own, three allocations
// per key, about a fifth of a re-list's CPU at 2 million keys, and most
// of its garbage, which the collector then pays for by marking the whole
// state again. rangePage keeps the response as the one buffer it arrived
// in, and each key and value is a slice of it.

// rangePage is one answer of etcd's Range, as read off the wire, and the
// events a listing makes of it.
type rangePage struct {
	buf      []byte
	kvs      []keyValue
	events   Events
	more     bool
	count    int64
	revision int64
}

// keyValue is one key of a page: slices of the page's buffer.
type keyValue struct{ key, value []byte }

// rawCodec marshals the request as the etcd client does and keeps the
// answer's bytes for parseRange.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("raw range codec: cannot marshal %T", v)
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	p, ok := v.(*rangePage)
	if !ok {
		return fmt.Errorf("raw range codec: cannot unmarshal into %T", v)
	}
	// gRPC frees data when this returns: the page gets its own copy, in
	// memory that holds no pointers, a released page's when it is large
	// enough (pages of a listing are alike: an eighth more makes most fit).
	need := data.Len()
	if cap(p.buf) < need {
		p.buf = make([]byte, need, need+need/8)
	}
	p.buf = p.buf[:need]
	data.CopyTo(p.buf)
	return nil
}

// readPage asks etcd for one page, read into p's memory. The client's
// connection carries its credentials and its retry policy, as the client's
// own Get would.
func readPage(ctx context.Context, c *clientv3.Client, req *pb.RangeRequest, p *rangePage) (*rangePage, error) {
	*p = rangePage{buf: p.buf[:0], kvs: p.kvs[:0], events: p.events[:0]}
	err := c.ActiveConnection().Invoke(ctx, "/etcdserverpb.KV/Range", req, p,
		grpc.ForceCodecV2(rawCodec{}), grpc.WaitForReady(true), grpc.MaxCallRecvMsgSize(math.MaxInt32))
	if err != nil {
		return nil, clientv3.ContextError(ctx, err)
	}
	if err := p.parse(); err != nil {
		return nil, fmt.Errorf("etcd's range answer: %w", err)
	}
	return p, nil
}

var errTruncated = errors.New("truncated")

// parse reads a RangeResponse (etcdserverpb/rpc.proto): header (1) with its
// revision (3), kvs (2) with each key (1) and value (5), more (3), count (4).
// Fields it does not read are skipped, as protobuf does.
func (p *rangePage) parse() error {
	// A new page's keys are counted first, so that their slice is
	// allocated once at its size: grown by appends it was the largest part
	// of a re-list's garbage, more than the pages themselves. A page read
	// into a released one keeps its slice (no page has more keys than the
	// limit of the first), and counting would walk its keys twice.
	if cap(p.kvs) == 0 {
		p.kvs = make([]keyValue, 0, countKeys(p.buf))
	}
	p.kvs = p.kvs[:0]
	b := p.buf
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return errTruncated
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			msg, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return errTruncated
			}
			rev, ok, err := headerRevision(msg)
			if err != nil {
				return fmt.Errorf("header: %w", err)
			}
			if ok {
				// A header given twice merges, as protobuf merges it.
				p.revision = rev
			}
			b = b[n:]
		case num == 2 && typ == protowire.BytesType:
			msg, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return errTruncated
			}
			kv, err := parseKeyValue(msg)
			if err != nil {
				return fmt.Errorf("kvs[%d]: %w", len(p.kvs), err)
			}
			p.kvs = append(p.kvs, kv)
			b = b[n:]
		case (num == 3 || num == 4) && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errTruncated
			}
			if num == 3 {
				p.more = v != 0
			} else {
				p.count = int64(v)
			}
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("field %d: %w", num, errTruncated)
			}
			b = b[n:]
		}
	}
	return nil
}

// countKeys counts the kvs fields of a RangeResponse, as far as it reads as
// one (parse says what is wrong with the rest).
func countKeys(b []byte) int {
	n := 0
	for len(b) > 0 {
		num, typ, l := consumeTag(b)
		if l < 0 {
			return n
		}
		b = b[l:]
		if l = protowire.ConsumeFieldValue(num, typ, b); l < 0 {
			return n
		}
		b = b[l:]
		if num == 2 && typ == protowire.BytesType {
			n++
		}
	}
	return n
}

// consumeTag is protowire.ConsumeTag refusing the field numbers protobuf
// refuses (above 2^29-1) as well as those it refuses itself.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	num, typ, n := protowire.ConsumeTag(b)
	if n >= 0 && num > protowire.MaxValidNumber {
		return 0, 0, -1
	}
	return num, typ, n
}

func headerRevision(b []byte) (rev int64, ok bool, err error) {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return 0, false, errTruncated
		}
		b = b[n:]
		if num == 3 && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, false, errTruncated
			}
			rev, ok, b = int64(v), true, b[n:]
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return 0, false, errTruncated
		}
		b = b[n:]
	}
	return rev, ok, nil
}

func parseKeyValue(b []byte) (kv keyValue, err error) {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return kv, errTruncated
		}
		b = b[n:]
		if (num == 1 || num == 5) && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return kv, errTruncated
			}
			// Capped, so that an append to one can never write into the next.
			if num == 1 {
				kv.key = v[:len(v):len(v)]
			} else {
				kv.value = v[:len(v):len(v)]
			}
			b = b[n:]
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return kv, errTruncated
		}
		b = b[n:]
	}
	return kv, nil
}
