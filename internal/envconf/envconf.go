// Package envconf reads a binary's settings from its environment. Every
// binary of the project reads its configuration through a Reader, so that a
// bad value is refused the same way everywhere: the first error wins, and it
// names the variable and says what was wanted, e.g.
//
//	PONG_WAIT="x": want a duration such as 30s
//
// An unset or empty variable takes the default the caller passes. The
// getters return the default on a bad value too, so a caller may read on and
// check Err once at the end.
package envconf

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Reader reads variables through a getenv func (os.Getenv in production, a
// map in tests) and remembers the first bad one. The zero Reader is not
// usable: call New.
type Reader struct {
	getenv func(string) string
	err    error
}

// New returns a Reader over getenv.
func New(getenv func(string) string) *Reader {
	return &Reader{getenv: getenv}
}

// Err returns the first error recorded, or nil.
func (r *Reader) Err() error { return r.err }

// Fail records an error made with fmt.Errorf, unless one is recorded
// already: for the rules the typed getters do not know (a value that
// parses but is out of the range a caller allows, a variable required with
// another one). The message should name the variable.
func (r *Reader) Fail(format string, a ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, a...)
	}
}

// Str returns name's value, or def if it is unset or empty.
func (r *Reader) Str(name, def string) string {
	if v := r.getenv(name); v != "" {
		return v
	}
	return def
}

// List returns name's comma-separated items, spaces trimmed and empty items
// dropped; nil if there is none.
func (r *Reader) List(name string) []string {
	var out []string
	for _, p := range strings.Split(r.getenv(name), ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Int returns name's value as a whole number, or def if it is unset.
func (r *Reader) Int(name string, def int) int {
	v := r.getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		r.Fail("%s=%q: want a whole number", name, v)
		return def
	}
	return n
}

// IntIn is Int for a value that must be from lo to hi.
func (r *Reader) IntIn(name string, def, lo, hi int) int {
	v := r.getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		r.Fail("%s=%q: want a whole number from %d to %d", name, v, lo, hi)
		return def
	}
	return n
}

// Dur returns name's value as a duration (time.ParseDuration: 30s, 1m30s),
// or def if it is unset.
func (r *Reader) Dur(name string, def time.Duration) time.Duration {
	v := r.getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		r.Fail("%s=%q: want a duration such as 30s", name, v)
		return def
	}
	if d < 0 { // no setting is negative: a ticker of one would panic
		r.Fail("%s=%q: want a duration of 0 or more", name, v)
		return def
	}
	return d
}

// PositiveDur is Dur for a value that must be more than zero.
func (r *Reader) PositiveDur(name string, def time.Duration) time.Duration {
	v := r.getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		r.Fail("%s=%q: want a positive duration such as 30s", name, v)
		return def
	}
	return d
}

// DurIn is Dur for a value that must be from lo to hi.
func (r *Reader) DurIn(name string, def, lo, hi time.Duration) time.Duration {
	v := r.getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < lo || d > hi {
		r.Fail("%s=%q: want a duration from %s to %s", name, v, Short(lo), Short(hi))
		return def
	}
	return d
}

// Flag reads a 0/1 setting: unset, empty or 0 is false, 1 is true, anything
// else an error.
func (r *Reader) Flag(name string) bool {
	switch v := r.getenv(name); v {
	case "", "0":
		return false
	case "1":
		return true
	default:
		r.Fail("%s=%q: want 0 or 1", name, v)
		return false
	}
}

// Bool reads a boolean as strconv.ParseBool does (1, t, true, 0, f, false
// and their capitals); unset or empty is false. Flag is for new settings;
// Bool keeps the settings that have always taken true and false working.
func (r *Reader) Bool(name string) bool {
	v := r.getenv(name)
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.Fail("%s=%q: want 1 or 0", name, v)
		return false
	}
	return b
}

// LogLevel reads a slog level (debug, info, warn, error), or def if unset.
func (r *Reader) LogLevel(name string, def slog.Level) slog.Level {
	v := r.getenv(name)
	if v == "" {
		return def
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(v)); err != nil {
		r.Fail("%s=%q: want debug, info, warn or error", name, v)
		return def
	}
	return l
}

// Short formats d as people write it in a setting: 1h, 10m, 1m30s, 500ms
// (time.Duration's String says 1h0m0s and 10m0s).
func Short(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
