// Package privfile writes the files a host keeps of its rooms (state files
// with the rooms' webhook secrets, webhook cursors): whole or not at all,
// and readable by their owner only.
package privfile

import "os"

// Write writes b to path through a temporary file renamed over it, mode
// 0600, so that a reader (a master started after a crash) never sees half
// of it.
func Write(path string, b []byte) error {
	tmp := path + ".tmp"
	os.Remove(tmp) // a leftover keeps its mode: start afresh
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
