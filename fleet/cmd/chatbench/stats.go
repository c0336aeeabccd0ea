package main

import (
	"math"
	"math/bits"
	"slices"
	"sync/atomic"
	"time"
)

// Latencies are kept in a log-linear histogram of microseconds: values below
// 2*subBuckets are exact, larger ones fall in buckets 1/subBuckets of a power
// of two wide, so a percentile is off by at most 1/subBuckets (1.6 %).
const (
	subBuckets = 64
	maxExp     = 30 // values up to 2^(maxExp+7) µs (about 38 hours)
	nBuckets   = 2*subBuckets + maxExp*subBuckets
)

// bucketOf returns the bucket of v microseconds.
func bucketOf(v int64) int {
	if v < 0 {
		v = 0
	}
	if v < 2*subBuckets {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - 7 // v>>e is in [64,128)
	if e > maxExp {
		return nBuckets - 1
	}
	return 2*subBuckets + (e-1)*subBuckets + int(v>>e) - subBuckets
}

// bucketValue returns the value a bucket stands for: the value itself for
// exact buckets, else the middle of the bucket.
func bucketValue(i int) int64 {
	if i < 2*subBuckets {
		return int64(i)
	}
	e := (i-2*subBuckets)/subBuckets + 1
	m := int64((i-2*subBuckets)%subBuckets + subBuckets)
	lo := m << e
	return lo + (int64(1)<<e)/2
}

// hist is a histogram of microsecond values that many goroutines may record
// into at once (atomically).
type hist struct {
	counts [nBuckets]atomic.Uint64
}

func (h *hist) record(us int64) { h.counts[bucketOf(us)].Add(1) }

// snapshot returns a plain copy of the counts.
func (h *hist) snapshot() *histSnap {
	var s histSnap
	for i := range h.counts {
		n := h.counts[i].Load()
		s.counts[i] = n
		s.n += n
	}
	return &s
}

// histSnap is a histogram that no one records into any more.
type histSnap struct {
	counts [nBuckets]uint64
	n      uint64
}

func (s *histSnap) add(o *histSnap) {
	for i := range s.counts {
		s.counts[i] += o.counts[i]
	}
	s.n += o.n
}

// quantile returns the q-quantile (0 < q <= 1) by nearest rank, in µs; 0 for
// an empty histogram.
func (s *histSnap) quantile(q float64) int64 {
	if s.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(s.n)))
	rank = min(max(rank, 1), s.n)
	var cum uint64
	for i, c := range s.counts {
		cum += c
		if cum >= rank {
			return bucketValue(i)
		}
	}
	return bucketValue(nBuckets - 1)
}

// max returns the largest recorded value (to bucket precision).
func (s *histSnap) max() int64 {
	for i := nBuckets - 1; i >= 0; i-- {
		if s.counts[i] > 0 {
			return bucketValue(i)
		}
	}
	return 0
}

// percentile returns the q-quantile of xs by nearest rank (xs is sorted in
// place); 0 for none. For small samples such as room starts.
func percentile(xs []time.Duration, q float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	rank := int(math.Ceil(q * float64(len(xs))))
	rank = min(max(rank, 1), len(xs))
	return xs[rank-1]
}

// median returns the median of xs (sorted in place), 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// seqTracker follows the sequence numbers one connection receives: the
// room's sequenced events reach every client in order, each seq one more
// than the previous, so a jump is that many lost events.
type seqTracker struct {
	last  int64 // the newest seq seen; the welcome's seq to start with
	lost  int64 // seqs skipped
	dups  int64 // seqs at or below last (replays, reordering)
	based bool
}

// base starts tracking after seq, the room's seq in the welcome.
func (t *seqTracker) base(seq int64) {
	t.last, t.based = seq, true
}

// observe takes the seq of one sequenced event.
func (t *seqTracker) observe(seq int64) {
	switch {
	case !t.based:
		t.base(seq)
	case seq == t.last+1:
		t.last = seq
	case seq > t.last+1:
		t.lost += seq - t.last - 1
		t.last = seq
	default:
		t.dups++
	}
}

// missing returns how many events up to upTo (the room's last seq) this
// connection has not seen yet: lost at the tail, or still on the way.
func (t *seqTracker) missing(upTo int64) int64 {
	if upTo > t.last {
		return upTo - t.last
	}
	return 0
}
