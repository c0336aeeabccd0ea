package devstore

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestIndexFileCreatesNoDatabase: a database file removed (its database
// dropped) between the indexer's listing and its pass is not created again.
func TestIndexFileCreatesNoDatabase(t *testing.T) {
	file := filepath.Join(t.TempDir(), "dropped.sqlite")
	if err := indexFile(context.Background(), file); err == nil {
		t.Error("indexFile of a missing database: no error")
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("the missing database exists after the pass: %v", err)
	}
}
