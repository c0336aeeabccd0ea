package chatfleet_test

import (
	"os"
	"regexp"
	"testing"

	"github.com/chatfleet/chatfleet"
)

// TestChangelogHasVersion: the source's version is a release that
// CHANGELOG.md describes first, so a release is never made without saying
// what changed for operators.
func TestChangelogHasVersion(t *testing.T) {
	b, err := os.ReadFile("CHANGELOG.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^## (\d+\.\d+\.\d+) `).FindSubmatch(b)
	if m == nil || string(m[1]) != chatfleet.Version {
		t.Fatalf("CHANGELOG.md's first release is %q, want chatfleet.Version %q", m, chatfleet.Version)
	}
}
