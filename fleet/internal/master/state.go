package master

import (
	"encoding/json"
	"os"
	"time"
)

// stateFormat is the format of the room state files this release writes.
// Formats only add fields (an older master reads a newer file's fields it
// knows, and a newer one reads an older file whole), so that a master
// adopts the rooms of the previous release and of the next (a rollback):
//
//	1: release 1.0.0 (no format field)
//	2: release 1.1.0: the format field
const stateFormat = 2

// stateFile is what StateDir/rooms/<port>.json records of a running room, for
// a later master to re-adopt it. It holds the room's webhook secret: mode
// 0600.
type stateFile struct {
	Format    int         `json:"format"`
	Name      string      `json:"name"`
	Port      int         `json:"port"`
	PID       int         `json:"pid"`
	CreatedAt time.Time   `json:"createdAt"`
	Options   RoomOptions `json:"options"`
}

// readState reads the state file at path, of any format.
func readState(path string) (stateFile, error) {
	var st stateFile
	b, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	st.Format = max(st.Format, 1)
	return st, err
}
