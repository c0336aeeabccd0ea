package devstore

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRotatingFile(t *testing.T) {
	line := strings.Repeat("x", 9) + "\n" // 10 bytes

	t.Run("appends, then rotates to .1", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "store.log")
		os.WriteFile(path, []byte(line), 0o600)
		r, err := openRotating(path, 35)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		for range 4 { // one line was there: two more fit, the third rotates
			if _, err := r.Write([]byte(line)); err != nil {
				t.Fatal(err)
			}
		}
		if got, old := readFile(t, path), readFile(t, path+".1"); got != strings.Repeat(line, 2) || old != strings.Repeat(line, 3) {
			t.Fatalf("file %q, .1 %q; want two lines and three", got, old)
		}
	})

	t.Run("a record larger than the bound is written whole", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "store.log")
		r, err := openRotating(path, 5)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		r.Write([]byte(line))
		r.Write([]byte(line))
		if got, old := readFile(t, path), readFile(t, path+".1"); got != line || old != line {
			t.Fatalf("file %q, .1 %q; want a line each", got, old)
		}
	})

	t.Run("emptied in place when .1 cannot be replaced", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "store.log")
		os.MkdirAll(filepath.Join(path+".1", "busy"), 0o700) // a rename onto a full folder fails
		r, err := openRotating(path, 15)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		r.Write([]byte("first line\n"))
		if _, err := r.Write([]byte("second\n")); err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, path); got != "second\n" {
			t.Fatalf("file %q, want the second line alone", got)
		}
	})

	t.Run("writes after Close are dropped", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "store.log")
		r, err := openRotating(path, 100)
		if err != nil {
			t.Fatal(err)
		}
		r.Close()
		r.Close()
		if n, err := r.Write([]byte(line)); n != len(line) || err != nil {
			t.Fatalf("Write after Close: %d, %v", n, err)
		}
		if got := readFile(t, path); got != "" {
			t.Fatalf("file %q after Close, want it empty", got)
		}
		var none *rotatingFile
		if err := none.Close(); err != nil {
			t.Fatal(err)
		}
	})
}
