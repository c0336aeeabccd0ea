package devstore

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
)

// newLogger returns the logger FerretDB writes to: cfg.Log from
// cfg.LogLevel up and, if cfg.LogFile is set, that file from
// cfg.LogFileLevel up. The file, if any, is returned for Stop to close.
func newLogger(cfg Config) (*slog.Logger, *rotatingFile, error) {
	handlers := []slog.Handler{levelHandler{cfg.LogLevel, cfg.Log.Handler()}}
	var file *rotatingFile
	if cfg.LogFile != "" {
		var err error
		if file, err = openRotating(cfg.LogFile, cfg.LogFileMax); err != nil {
			return nil, nil, fmt.Errorf("start devstore: log file: %w", err)
		}
		handlers = append(handlers, slog.NewTextHandler(file, &slog.HandlerOptions{Level: cfg.LogFileLevel}))
	}
	return slog.New(teeHandler(handlers)).With("component", "ferretdb"), file, nil
}

// levelHandler passes on the records of at least level.
type levelHandler struct {
	level slog.Leveler
	slog.Handler
}

func (h levelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level.Level() && h.Handler.Enabled(ctx, l)
}

func (h levelHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return levelHandler{h.level, h.Handler.WithAttrs(attrs)}
}

func (h levelHandler) WithGroup(name string) slog.Handler {
	return levelHandler{h.level, h.Handler.WithGroup(name)}
}

// teeHandler passes each record to every handler that is enabled for its
// level.
type teeHandler []slog.Handler

func (t teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	for _, h := range t {
		if h.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	var first error
	for _, h := range t {
		if h.Enabled(ctx, r.Level) {
			if err := h.Handle(ctx, r.Clone()); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}

func (t teeHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make(teeHandler, len(t))
	for i, h := range t {
		out[i] = h.WithAttrs(attrs)
	}
	return out
}

func (t teeHandler) WithGroup(name string) slog.Handler {
	out := make(teeHandler, len(t))
	for i, h := range t {
		out[i] = h.WithGroup(name)
	}
	return out
}

// rotatingFile is an append-only log file that, when a write would take it
// past max bytes, is renamed to path+".1" and begun again (emptied in place
// if it cannot be renamed). A single write larger than max is written whole
// to a fresh file. Its methods may be called from any goroutine.
type rotatingFile struct {
	path string
	max  int64

	mu   sync.Mutex
	f    *os.File // nil once closed
	size int64
}

func openRotating(path string, max int64) (*rotatingFile, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	r := &rotatingFile{path: path, max: max}
	if err := r.open(0); err != nil {
		return nil, err
	}
	return r, nil
}

// open opens the file for appending, with extra flags such as os.O_TRUNC.
func (r *rotatingFile) open(extra int) error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|extra, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	r.f, r.size = f, fi.Size()
	return nil
}

// Write appends p, rotating first if p would take the file past max.
// After Close, or once the file could not be opened again, it drops p and
// reports success: FerretDB has no use for a logging error.
func (r *rotatingFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return len(p), nil
	}
	if r.size > 0 && r.size+int64(len(p)) > r.max {
		if err := r.rotate(); err != nil {
			return 0, fmt.Errorf("rotate %s: %w", r.path, err)
		}
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	return n, err
}

func (r *rotatingFile) rotate() error {
	r.f.Close()
	r.f = nil
	if err := os.Rename(r.path, r.path+".1"); err != nil {
		return r.open(os.O_TRUNC)
	}
	return r.open(0)
}

// Close closes the file; later writes are dropped. It may be called on a
// nil *rotatingFile and more than once.
func (r *rotatingFile) Close() error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
