package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// row is one line of the table: a fan-out step (the median of its runs) or a
// single figure (Value, Unit).
type row struct {
	Scenario   string       `json:"scenario"`
	Case       string       `json:"case"`
	Viewers    int          `json:"viewers,omitempty"`
	Rate       float64      `json:"rate,omitempty"`
	SentRate   float64      `json:"sentRate,omitempty"`
	DelivPerS  float64      `json:"deliveriesPerSec,omitempty"`
	P50ms      float64      `json:"p50ms,omitempty"`
	P99ms      float64      `json:"p99ms,omitempty"`
	P999ms     float64      `json:"p999ms,omitempty"`
	MaxMs      float64      `json:"maxMs,omitempty"`
	Lost       int64        `json:"lost"`
	Dropped    int          `json:"dropped"`
	Refused    int64        `json:"refused"`
	CPUPerDlvU float64      `json:"roomCpuUsPerDelivery,omitempty"`
	CPUPerFrmU float64      `json:"roomCpuUsPerFrame,omitempty"`
	MsgsPerFrm float64      `json:"msgsPerFrame,omitempty"`
	WallS      float64      `json:"wallS,omitempty"`
	RoomCPUS   float64      `json:"roomCpuS,omitempty"`
	GenCPUS    float64      `json:"genCpuS,omitempty"`
	OtherCPUS  float64      `json:"otherCpuS,omitempty"`
	Value      float64      `json:"value,omitempty"`
	Unit       string       `json:"unit,omitempty"`
	Detail     string       `json:"detail,omitempty"`
	Profile    string       `json:"profile,omitempty"`
	Target     string       `json:"target,omitempty"`
	Met        *bool        `json:"met,omitempty"`
	Runs       []stepResult `json:"runs,omitempty"`
	Fail       string       `json:"fail,omitempty"` // why a step did not pass the ceiling's bar
}

// results is what a run writes to bench/results.json.
type results struct {
	When         time.Time          `json:"when"`
	Mode         string             `json:"mode"`
	Git          string             `json:"git"`
	Machine      string             `json:"machine"`
	LoadAvgStart string             `json:"loadAvgStart"`
	LoadAvgEnd   string             `json:"loadAvgEnd"`
	WallS        float64            `json:"wallS"`
	GenCPUS      float64            `json:"genCpuS"`
	Ceilings     map[string]float64 `json:"ceilings"`
	Rows         []row              `json:"rows"`
	Errors       []string           `json:"errors,omitempty"`
}

func newResults(quick bool) results {
	mode := "full"
	if quick {
		mode = "quick"
	}
	return results{When: time.Now().UTC(), Mode: mode, Git: gitRev(), Machine: machine(), Ceilings: map[string]float64{}}
}

func (r *results) add(x row) { r.Rows = append(r.Rows, x) }

// addSteps adds the median of runs as one row, losses summed over runs.
func (r *results) addSteps(scenario, name string, runs []stepResult) {
	if len(runs) == 0 {
		return
	}
	med := func(f func(*stepResult) float64) float64 {
		xs := make([]float64, len(runs))
		for i := range runs {
			xs[i] = f(&runs[i])
		}
		return median(xs)
	}
	x := row{Scenario: scenario, Case: name, Viewers: runs[0].Viewers, Rate: runs[0].Rate, Runs: runs,
		SentRate:   med(func(s *stepResult) float64 { return s.SentRate }),
		DelivPerS:  med(func(s *stepResult) float64 { return s.DelivPerS }),
		P50ms:      med(func(s *stepResult) float64 { return s.P50ms }),
		P99ms:      med(func(s *stepResult) float64 { return s.P99ms }),
		P999ms:     med(func(s *stepResult) float64 { return s.P999ms }),
		MaxMs:      med(func(s *stepResult) float64 { return s.MaxMs }),
		CPUPerDlvU: med(func(s *stepResult) float64 { return s.CPUPerDlvU }),
		CPUPerFrmU: med(func(s *stepResult) float64 { return s.CPUPerFrmU }),
		MsgsPerFrm: med(func(s *stepResult) float64 { return s.MsgsPerFrm }),
		WallS:      med(func(s *stepResult) float64 { return s.WallS }),
		RoomCPUS:   med(func(s *stepResult) float64 { return s.RoomCPUS }),
		GenCPUS:    med(func(s *stepResult) float64 { return s.GenCPUS }),
		OtherCPUS:  med(func(s *stepResult) float64 { return s.OtherCPUS }),
	}
	failed := 0
	for _, s := range runs {
		x.Lost += s.Lost
		x.Dropped += s.Dropped
		x.Refused += s.Refused
		if x.Profile == "" {
			x.Profile = s.Profile
		}
		if ok, why := s.ok(maxP99ms); !ok {
			if failed++; x.Fail == "" {
				x.Fail = why
			}
		}
	}
	if failed > 0 && len(runs) > 1 {
		x.Fail = fmt.Sprintf("%d of %d runs, first: %s", failed, len(runs), x.Fail)
	}
	if len(runs) > 1 {
		x.Detail = fmt.Sprintf("median of %d runs", len(runs))
	}
	r.Rows = append(r.Rows, x)
}

func (r *results) find(scenario, name string) *row {
	for i := range r.Rows {
		if r.Rows[i].Scenario == scenario && strings.HasPrefix(r.Rows[i].Case, name) {
			return &r.Rows[i]
		}
	}
	return nil
}

// evaluate marks the rows that carry one of the targets.
func (r *results) evaluate() {
	set := func(x *row, target string, met bool) {
		if x != nil {
			x.Target, x.Met = target, &met
		}
	}
	noLoss := func(x *row) bool { return x.Lost == 0 && x.Dropped == 0 && x.Refused == 0 }
	if x := r.find("fanout", "N=1000 fixed 1500/s"); x != nil {
		set(x, "sustained, no loss, p99<100ms", x.SentRate >= 0.97*1500 && noLoss(x) && x.P99ms < 100)
	}
	if x := r.find("fanout", "N=1000 fixed 200/s"); x != nil {
		set(x, "p99<20ms, CPU<=2.5µs/dlv", x.P99ms < 20 && x.CPUPerDlvU <= 2.5 && noLoss(x))
	}
	if x := r.find("fanout", "N=10000 fixed 10/s"); x != nil {
		set(x, "p99<120ms", x.P99ms < 120 && noLoss(x))
	}
	if x := r.find("fanout", "N=10000 fixed 20/s"); x != nil {
		set(x, "p99<500ms, no loss", x.P99ms < 500 && noLoss(x))
	}
	if x := r.find("scaleout", "N=10000 over 2 edges 20/s"); x != nil {
		set(x, "p99<500ms, no loss", x.P99ms < 500 && noLoss(x))
	}
	if x := r.find("memory", "N=10000"); x != nil {
		set(x, "<=10 KiB/conn", x.Value <= 10)
	}
	for i := range r.Rows {
		if x := &r.Rows[i]; x.Scenario == "roomstart" && strings.HasSuffix(x.Case, "create to welcome") {
			set(x, "p99<30ms", x.P99ms < 30)
		}
	}
	for i := range r.Rows { // host density (issue 21)
		x := &r.Rows[i]
		if x.Scenario != "density" {
			continue
		}
		switch {
		case strings.HasSuffix(x.Case, "rooms idle: PSS per room"):
			set(x, "<=2 MiB", x.Value <= 2)
		case strings.HasSuffix(x.Case, "rooms idle: master CPU"):
			set(x, "<5% of a core", x.Value < 5)
		case strings.Contains(x.Case, " viewers, 1 msg/s each"):
			set(x, "p99<=30ms, no loss", x.P99ms <= 30 && noLoss(x) && x.Fail == "")
		}
	}
	if x := r.find("isolation", "quiet p99 flooded / alone"); x != nil {
		set(x, "<=2x", x.Value <= 2)
	}
	// The control path (issue 21), through the local stack.
	if x := r.find("control", "control API create (8 conc.)"); x != nil {
		set(x, "p99<=60ms, >=100/s", x.P99ms <= 60 && x.Value >= 100)
	}
	if x := r.find("control", "control API list, 1000 rooms"); x != nil {
		set(x, "p99<=20ms", x.P99ms <= 20)
	}
	if x := r.find("control", "control API token issue ("); x != nil {
		set(x, "p99<=10ms", x.P99ms <= 10)
	}
}

// print writes the table.
func (r *results) print(w io.Writer) {
	fmt.Fprintf(w, "chatbench %s, %s, git %s, load %s -> %s, %.0fs wall, %.0fs load-generator CPU\n",
		r.Mode, r.Machine, r.Git, r.LoadAvgStart, r.LoadAvgEnd, r.WallS, r.GenCPUS)
	tw := tabwriter.NewWriter(w, 2, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
	fmt.Fprintln(tw, "scenario\tcase\tsent msg/s\tdeliv/s\tp50 ms\tp99 ms\tp99.9 ms\tlost\tdrop\troom µs/dlv\tmsgs/write\twall s\troom CPU s\tgen CPU s\tother CPU s\tresult\ttarget\tmet\t")
	num := func(v float64, prec int) string {
		if v == 0 {
			return "-"
		}
		return fmt.Sprintf("%.*f", prec, v)
	}
	for _, x := range r.Rows {
		result := ""
		switch {
		case x.Unit != "":
			result = fmt.Sprintf("%.*f %s", prec(x.Value), x.Value, x.Unit)
		case x.Fail != "":
			result = "FAIL: " + x.Fail
		case x.Runs != nil:
			result = "pass"
		}
		met := ""
		if x.Met != nil {
			met = "MISSED"
			if *x.Met {
				met = "met"
			}
		}
		lost, drop := "-", "-"
		if x.Runs != nil {
			lost, drop = fmt.Sprint(x.Lost), fmt.Sprint(x.Dropped)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			x.Scenario, x.Case, num(x.SentRate, 0), num(x.DelivPerS, 0), num(x.P50ms, 2), num(x.P99ms, 2), num(x.P999ms, 2),
			lost, drop, num(x.CPUPerDlvU, 2), num(x.MsgsPerFrm, 1), num(x.WallS, 1), num(x.RoomCPUS, 2), num(x.GenCPUS, 2), num(x.OtherCPUS, 2), result, x.Target, met)
	}
	tw.Flush()
	for _, e := range r.Errors {
		fmt.Fprintln(w, "error:", e)
	}
}

func prec(v float64) int {
	switch {
	case v >= 100:
		return 0
	case v >= 10:
		return 1
	}
	return 2
}
