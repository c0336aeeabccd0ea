package httpx

import (
	"encoding/json"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/chatfleet/chatfleet"
)

// fuzzBody has the shapes request bodies have: strings, numbers, booleans,
// nested objects, lists and free-form maps.
type fuzzBody struct {
	Name string         `json:"name"`
	N    int            `json:"n"`
	F    float64        `json:"f"`
	On   *bool          `json:"on"`
	Opts fuzzOpts       `json:"opts"`
	Tags []string       `json:"tags"`
	Any  map[string]any `json:"any"`
}

type fuzzOpts struct {
	Size  int   `json:"size"`
	List  []int `json:"list"`
	Inner *struct {
		X uint8 `json:"x"`
	} `json:"inner"`
}

// FuzzUnmarshal checks Unmarshal's contract on any input: it never panics;
// a refusal is EINVALID with a message in valid UTF-8 (it reaches clients);
// what it accepts is exactly one valid JSON value (no trailing data) that
// encoding/json decodes to the same Go value, with no unknown field.
func FuzzUnmarshal(f *testing.F) {
	for _, s := range []string{
		`{"name":"a","n":1,"f":1.5,"on":true,"opts":{"size":2,"list":[1,2],"inner":{"x":3}},"tags":["x"],"any":{"k":[null,{}]}}`,
		`{}`, ` {"name":"é"} `, `null`, `{"n":1.5}`, `{"n":"1"}`, `{"opts":{"inner":{"x":300}}}`, `{"bogus":1}`,
		`{"name":"a"} {}`, `{"name":"\ud800"}`, "{\"name\":\"\xff\"}", `{"tags":[1]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var v fuzzBody
		err := Unmarshal(b, &v)
		if err != nil {
			if code := chatfleet.ErrorCode(err); code != chatfleet.EINVALID {
				t.Fatalf("Unmarshal(%q): code %q (%v)", b, code, err)
			}
			if msg := chatfleet.ErrorMessage(err); !utf8.ValidString(msg) || msg == "" {
				t.Fatalf("Unmarshal(%q): message %q", b, msg)
			}
			return
		}
		if !json.Valid(b) {
			t.Fatalf("Unmarshal accepted %q, which is not one JSON value", b)
		}
		var std fuzzBody
		if err := json.Unmarshal(b, &std); err != nil {
			t.Fatalf("Unmarshal accepted %q, encoding/json refuses it: %v", b, err)
		}
		if !reflect.DeepEqual(v, std) {
			t.Fatalf("Unmarshal(%q) = %+v, encoding/json gives %+v", b, v, std)
		}
		// What was accepted survives a round trip.
		enc, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", v, err)
		}
		var again fuzzBody
		if err := Unmarshal(enc, &again); err != nil {
			t.Fatalf("Unmarshal(Marshal(%q)) = %s: %v", b, enc, err)
		}
	})
}
