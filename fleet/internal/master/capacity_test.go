package master

import "testing"

func TestDefaultMaxRooms(t *testing.T) {
	const gib = 1 << 30
	for _, tt := range []struct {
		name   string
		ports  int
		nofile uint64
		mem    int64
		pidMax int
		want   int
	}{
		{"this machine: the port range", 1000, 20000, 24 * gib, 32768, 1000},
		{"nothing known: the port range", 1000, 0, 0, 0, 1000},
		{"a 1 GiB host", 1000, 200000, 1 * gib, 4194304, 128},
		{"the usual 1,024 descriptors", 1000, 1024, 24 * gib, 4194304, 128},
		{"few task ids", 1000, 200000, 24 * gib, 4096, 256},
		{"never below one", 1000, 100, 1 << 20, 10, 1},
	} {
		if got := defaultMaxRooms(tt.ports, tt.nofile, tt.mem, tt.pidMax); got != tt.want {
			t.Errorf("%s: defaultMaxRooms(%d, %d, %d, %d) = %d, want %d", tt.name, tt.ports, tt.nofile, tt.mem, tt.pidMax, got, tt.want)
		}
	}
}
