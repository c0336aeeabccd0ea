package envconf

import (
	"log/slog"
	"reflect"
	"testing"
	"time"
)

// env returns a getenv over the given name, value pairs.
func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestDefaults(t *testing.T) {
	r := New(env())
	if got := r.Str("S", "def"); got != "def" {
		t.Errorf("Str = %q", got)
	}
	if got := r.Int("I", 7); got != 7 {
		t.Errorf("Int = %d", got)
	}
	if got := r.IntIn("I", 7, 1, 5); got != 7 {
		t.Errorf("IntIn = %d (the default is not checked against the range)", got)
	}
	if got := r.Dur("D", time.Second); got != time.Second {
		t.Errorf("Dur = %v", got)
	}
	if got := r.PositiveDur("D", 2*time.Second); got != 2*time.Second {
		t.Errorf("PositiveDur = %v", got)
	}
	if got := r.DurIn("D", 3*time.Second, time.Minute, time.Hour); got != 3*time.Second {
		t.Errorf("DurIn = %v", got)
	}
	if r.Flag("F") || r.Bool("B") {
		t.Error("an unset flag is true")
	}
	if got := r.List("L"); got != nil {
		t.Errorf("List = %q", got)
	}
	if got := r.LogLevel("LL", slog.LevelWarn); got != slog.LevelWarn {
		t.Errorf("LogLevel = %v", got)
	}
	if r.Err() != nil {
		t.Errorf("Err = %v", r.Err())
	}
}

func TestValues(t *testing.T) {
	r := New(env("S", "x", "I", "-3", "IN", "5", "D", "1m30s", "PD", "8s", "DI", "1h", "F", "1", "B", "true",
		"L", " a, ,b ,", "LL", "debug"))
	if got := r.Str("S", "def"); got != "x" {
		t.Errorf("Str = %q", got)
	}
	if got := r.Int("I", 7); got != -3 {
		t.Errorf("Int = %d", got)
	}
	if got := r.IntIn("IN", 7, 1, 5); got != 5 {
		t.Errorf("IntIn = %d", got)
	}
	if got := r.Dur("D", 0); got != 90*time.Second {
		t.Errorf("Dur = %v", got)
	}
	if got := r.PositiveDur("PD", 0); got != 8*time.Second {
		t.Errorf("PositiveDur = %v", got)
	}
	if got := r.DurIn("DI", 0, time.Second, time.Hour); got != time.Hour {
		t.Errorf("DurIn = %v", got)
	}
	if !r.Flag("F") || !r.Bool("B") {
		t.Error("a set flag is false")
	}
	if got := r.List("L"); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("List = %q", got)
	}
	if got := r.LogLevel("LL", slog.LevelError); got != slog.LevelDebug {
		t.Errorf("LogLevel = %v", got)
	}
	if r.Err() != nil {
		t.Errorf("Err = %v", r.Err())
	}
}

// TestErrors checks each getter's error text (operators read it; chatserver's
// tests hold some of them) and that a bad value yields the default.
func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		value string
		read  func(r *Reader) any
		want  any // what the getter returns
		err   string
	}{
		{"x", func(r *Reader) any { return r.Int("V", 4) }, 4, `V="x": want a whole number`},
		{"9", func(r *Reader) any { return r.IntIn("V", 4, 1, 8) }, 4, `V="9": want a whole number from 1 to 8`},
		{"0", func(r *Reader) any { return r.IntIn("V", 4, 1, 8) }, 4, `V="0": want a whole number from 1 to 8`},
		{"soon", func(r *Reader) any { return r.Dur("V", time.Second) }, time.Second, `V="soon": want a duration such as 30s`},
		{"-1s", func(r *Reader) any { return r.Dur("V", time.Second) }, time.Second, `V="-1s": want a duration of 0 or more`},
		{"0s", func(r *Reader) any { return r.PositiveDur("V", time.Second) }, time.Second, `V="0s": want a positive duration such as 30s`},
		{"-1s", func(r *Reader) any { return r.PositiveDur("V", time.Second) }, time.Second, `V="-1s": want a positive duration such as 30s`},
		{"2h", func(r *Reader) any { return r.DurIn("V", time.Second, time.Second, time.Hour) }, time.Second, `V="2h": want a duration from 1s to 1h`},
		{"30", func(r *Reader) any { return r.DurIn("V", time.Second, time.Second, 10*time.Minute) }, time.Second, `V="30": want a duration from 1s to 10m`},
		{"yes", func(r *Reader) any { return r.Flag("V") }, false, `V="yes": want 0 or 1`},
		{"true", func(r *Reader) any { return r.Flag("V") }, false, `V="true": want 0 or 1`},
		{"yes", func(r *Reader) any { return r.Bool("V") }, false, `V="yes": want 1 or 0`},
		{"loud", func(r *Reader) any { return r.LogLevel("V", slog.LevelInfo) }, slog.LevelInfo, `V="loud": want debug, info, warn or error`},
	} {
		r := New(env("V", tc.value))
		got := tc.read(r)
		if got != tc.want {
			t.Errorf("%s: got %v, want the default %v", tc.err, got, tc.want)
		}
		if r.Err() == nil || r.Err().Error() != tc.err {
			t.Errorf("V=%q: error %v, want %q", tc.value, r.Err(), tc.err)
		}
	}
}

func TestFirstErrorWins(t *testing.T) {
	r := New(env("A", "x", "B", "y"))
	r.Int("A", 0)
	r.Dur("B", 0)
	r.Fail("C is wrong")
	if r.Err() == nil || r.Err().Error() != `A="x": want a whole number` {
		t.Errorf("Err = %v, want the first one, A's", r.Err())
	}
	r = New(env())
	r.Fail("C=%d: want 1 to %d", 0, 5)
	r.Fail("D is wrong")
	if r.Err() == nil || r.Err().Error() != "C=0: want 1 to 5" {
		t.Errorf("Err = %v, want the first Fail", r.Err())
	}
}

func TestShort(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Hour: "1h", 10 * time.Minute: "10m", 90 * time.Second: "1m30s", time.Second: "1s",
		500 * time.Millisecond: "500ms", 0: "0s", 61 * time.Minute: "1h1m", 3600*time.Second + time.Second: "1h0m1s",
	} {
		if got := Short(d); got != want {
			t.Errorf("Short(%v) = %q, want %q", d, got, want)
		}
	}
}
