package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBuckets(t *testing.T) {
	prev := -1
	for v := int64(0); v < 1<<22; v += 1 + v/97 {
		i := bucketOf(v)
		if i < prev {
			t.Fatalf("bucketOf(%d) = %d, below bucketOf of a smaller value (%d)", v, i, prev)
		}
		prev = i
		got := bucketValue(i)
		if err := math.Abs(float64(got-v)) / math.Max(1, float64(v)); err > 1.0/subBuckets {
			t.Fatalf("value %d: bucket %d stands for %d, %.2f%% off", v, i, got, 100*err)
		}
	}
	for _, v := range []int64{-5, 0, 1, 127} {
		if got := bucketValue(bucketOf(v)); got != max(v, 0) {
			t.Errorf("small value %d is not exact: %d", v, got)
		}
	}
	if bucketOf(math.MaxInt64) != nBuckets-1 {
		t.Error("huge values do not land in the last bucket")
	}
}

// exactQuantile is the nearest-rank quantile of sorted xs.
func exactQuantile(xs []int64, q float64) int64 {
	rank := int(math.Ceil(q * float64(len(xs))))
	return xs[min(max(rank, 1), len(xs))-1]
}

func TestHistQuantiles(t *testing.T) {
	tests := []struct {
		name string
		gen  func(r *rand.Rand) int64
	}{
		{"uniform 0-200µs", func(r *rand.Rand) int64 { return r.Int64N(200) }},
		{"exponential mean 3ms", func(r *rand.Rand) int64 { return int64(r.ExpFloat64() * 3000) }},
		{"bimodal 1ms and 80ms", func(r *rand.Rand) int64 {
			if r.IntN(100) < 2 {
				return 80000 + r.Int64N(5000)
			}
			return 1000 + r.Int64N(300)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			var h hist
			xs := make([]int64, 50000)
			for i := range xs {
				xs[i] = tt.gen(r)
				h.record(xs[i])
			}
			slices.Sort(xs)
			s := h.snapshot()
			if s.n != uint64(len(xs)) {
				t.Fatalf("count %d, want %d", s.n, len(xs))
			}
			for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
				want, got := exactQuantile(xs, q), s.quantile(q)
				if err := math.Abs(float64(got-want)) / math.Max(1, float64(want)); err > 1.0/subBuckets {
					t.Errorf("q%.3f = %d µs, exact %d µs (%.2f%% off)", q, got, want, 100*err)
				}
			}
			if got, want := s.max(), xs[len(xs)-1]; math.Abs(float64(got-want)) > float64(want)/subBuckets+1 {
				t.Errorf("max %d, want about %d", got, want)
			}
		})
	}
}

func TestHistEmptyAndMerge(t *testing.T) {
	var a, b hist
	if q := a.snapshot().quantile(0.99); q != 0 {
		t.Errorf("empty histogram p99 = %d", q)
	}
	for range 99 {
		a.record(1000)
	}
	b.record(50000)
	s := a.snapshot()
	s.add(b.snapshot())
	if s.n != 100 {
		t.Fatalf("merged count %d", s.n)
	}
	if got := s.quantile(0.99); got > 1016 || got < 984 {
		t.Errorf("p99 of 99×1ms + 1×50ms = %d µs, want about 1000", got)
	}
	if got := s.quantile(1); got < 49000 {
		t.Errorf("p100 = %d µs, want about 50000", got)
	}
}

func TestPercentileAndMedian(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var d []time.Duration
		for _, n := range ns {
			d = append(d, time.Duration(n)*time.Millisecond)
		}
		return d
	}
	tests := []struct {
		name string
		xs   []time.Duration
		q    float64
		want time.Duration
	}{
		{"empty", nil, 0.99, 0},
		{"one", ms(7), 0.5, 7 * time.Millisecond},
		{"p50 of 4 is the 2nd", ms(4, 1, 3, 2), 0.5, 2 * time.Millisecond},
		{"p99 of 100 is the 99th", func() []time.Duration {
			var d []time.Duration
			for i := 100; i >= 1; i-- {
				d = append(d, time.Duration(i)*time.Millisecond)
			}
			return d
		}(), 0.99, 99 * time.Millisecond},
		{"p100 is the max", ms(3, 9, 1), 1, 9 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.xs, tt.q); got != tt.want {
				t.Errorf("percentile(%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median of 3 = %v", m)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median of 4 = %v", m)
	}
	if m := median(nil); m != 0 {
		t.Errorf("median of none = %v", m)
	}
}

func TestSeqTracker(t *testing.T) {
	tests := []struct {
		name     string
		base     int64 // <0: no welcome
		seqs     []int64
		upTo     int64 // the room's last seq
		lost     int64
		dups     int64
		missing  int64
		wantLast int64
	}{
		{"in order", 10, []int64{11, 12, 13}, 13, 0, 0, 0, 13},
		{"nothing after the welcome", 5, nil, 5, 0, 0, 0, 5},
		{"one gap", 0, []int64{1, 2, 5, 6}, 6, 2, 0, 0, 6},
		{"gap right after the welcome", 7, []int64{9}, 9, 1, 0, 0, 9},
		{"two gaps", 100, []int64{101, 103, 104, 110}, 110, 1 + 5, 0, 0, 110},
		{"duplicate and replay", 3, []int64{4, 4, 2, 5}, 5, 0, 2, 0, 5},
		{"tail not received", 1, []int64{2, 3}, 8, 0, 0, 5, 3},
		{"gap and tail", 0, []int64{1, 4}, 6, 2, 0, 2, 4},
		{"no welcome: first seq is the base", -1, []int64{40, 41, 43}, 43, 1, 0, 0, 43},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tr seqTracker
			if tt.base >= 0 {
				tr.base(tt.base)
			}
			for _, s := range tt.seqs {
				tr.observe(s)
			}
			if tr.lost != tt.lost || tr.dups != tt.dups || tr.last != tt.wantLast {
				t.Errorf("lost %d dups %d last %d, want lost %d dups %d last %d", tr.lost, tr.dups, tr.last, tt.lost, tt.dups, tt.wantLast)
			}
			if m := tr.missing(tt.upTo); m != tt.missing {
				t.Errorf("missing(%d) = %d, want %d", tt.upTo, m, tt.missing)
			}
		})
	}
}

func TestParseStatCPU(t *testing.T) {
	// A command name with a space and a parenthesis; utime 250, stime 50 ticks.
	line := []byte("4242 (chat server) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 100 1000000 500 18446744073709551615")
	got, err := parseStatCPU(line)
	if err != nil {
		t.Fatal(err)
	}
	if want := 300 * clockTick; got != want {
		t.Errorf("cpu %v, want %v", got, want)
	}
	if _, err := parseStatCPU([]byte("garbage")); err == nil {
		t.Error("garbage parsed")
	}
}

func TestParseMachineBusy(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	got := parseMachineBusy("cpu  100 5 50 1000 20 1 4 0 30 0")
	if want := 160 * clockTick; got != want {
		t.Errorf("busy %v, want %v", got, want)
	}
	if parseMachineBusy("cpu0 1 2 3 4 5") != 0 || parseMachineBusy("") != 0 {
		t.Error("not the aggregate line, yet parsed")
	}
}
