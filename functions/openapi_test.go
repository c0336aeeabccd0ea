package functions_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/getkin/kin-openapi/openapi3"

	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/functions/api"
	"github.com/chatfleet/chatfleet/httpx"
	"github.com/chatfleet/chatfleet/internal/testutil"
)

// The OpenAPI description of both APIs, docs/openapi.yaml, loaded and
// validated once with kin-openapi.
var (
	openAPIOnce sync.Once
	openAPIDoc  *openapi3.T
	openAPIErr  error
)

func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	path := filepath.Join(testutil.ModuleRoot(t), "docs", "openapi.yaml")
	openAPIOnce.Do(func() {
		loader := openapi3.NewLoader()
		openAPIDoc, openAPIErr = loader.LoadFromFile(path)
		if openAPIErr == nil {
			openAPIErr = openAPIDoc.Validate(loader.Context)
		}
	})
	if openAPIErr != nil {
		t.Fatalf("%s: %v", path, openAPIErr)
	}
	return openAPIDoc
}

// operation returns the documented operation of method on path (an API
// Gateway resource, as in the route tables), or nil.
func operation(doc *openapi3.T, method, path string) *openapi3.Operation {
	item := doc.Paths.Value(path)
	if item == nil {
		return nil
	}
	return item.GetOperation(strings.ToUpper(method))
}

// jsonSchema returns the application/json schema of a response or request
// body's content, or nil if it has no content.
func jsonSchema(t *testing.T, content openapi3.Content) *openapi3.Schema {
	t.Helper()
	if len(content) == 0 {
		return nil
	}
	mt := content.Get("application/json")
	if mt == nil || mt.Schema == nil || mt.Schema.Value == nil {
		t.Fatalf("content %v has no application/json schema", slices.Collect(func(yield func(string) bool) {
			for k := range content {
				if !yield(k) {
					return
				}
			}
		}))
	}
	return mt.Schema.Value
}

// validateJSON checks that body is JSON that schema accepts.
func validateJSON(doc *openapi3.T, schema *openapi3.Schema, body []byte) error {
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return err
	}
	return doc.ValidateSchemaJSON(schema, v, openapi3.EnableJSONSchema2020(), openapi3.MultiErrors())
}

// errorSchema is the shared error envelope, components.schemas.ErrorEnvelope.
func errorSchema(t *testing.T, doc *openapi3.T) *openapi3.Schema {
	t.Helper()
	s := doc.Components.Schemas["ErrorEnvelope"]
	if s == nil || s.Value == nil {
		t.Fatal("no components.schemas.ErrorEnvelope")
	}
	return s.Value
}

// allRoutes are the route tables: what the two handlers serve.
func allRoutes() []api.Route {
	return slices.Concat(api.RoomRoutes, api.RoomPreflightRoutes, api.AdminRoutes)
}

// TestOpenAPI checks docs/openapi.yaml: a valid OpenAPI 3.1 document whose
// paths and methods are exactly the handlers' route tables, each under its
// API's key (a preflight under none), whose error envelope is httpx's, and
// in which every status events/expect.json expects is documented for its
// route. (TestEvents checks the answers' bodies against it.)
func TestOpenAPI(t *testing.T) {
	doc := loadOpenAPI(t)
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Errorf("openapi %q, want 3.1.x", doc.OpenAPI)
	}
	if len(doc.Servers) == 0 {
		t.Error("no servers")
	}

	t.Run("routes", func(t *testing.T) {
		var documented []api.Route
		for path, item := range doc.Paths.Map() {
			for method := range item.Operations() {
				documented = append(documented, api.Route{Method: method, Path: path})
			}
		}
		routes := allRoutes()
		for _, r := range routes {
			if !slices.Contains(documented, r) {
				t.Errorf("the handlers serve %s, docs/openapi.yaml does not describe it", r)
			}
		}
		for _, r := range documented {
			if !slices.Contains(routes, r) {
				t.Errorf("docs/openapi.yaml describes %s, no handler serves it", r)
			}
		}
	})

	t.Run("security", func(t *testing.T) {
		for _, want := range []struct {
			scheme string
			routes []api.Route
		}{{"roomApiKey", api.RoomRoutes}, {"adminApiKey", api.AdminRoutes}, {"", api.RoomPreflightRoutes}} {
			if want.scheme != "" {
				ss := doc.Components.SecuritySchemes[want.scheme]
				if ss == nil || ss.Value.Type != "apiKey" || ss.Value.In != "header" || ss.Value.Name != "X-API-Key" {
					t.Errorf("security scheme %s is not the X-API-Key header", want.scheme)
				}
			}
			for _, r := range want.routes {
				op := operation(doc, r.Method, r.Path)
				if op == nil {
					continue // reported above
				}
				var got []string
				if op.Security != nil {
					for _, req := range *op.Security {
						for name := range req {
							got = append(got, name)
						}
					}
				}
				if wantList := []string{want.scheme}; want.scheme == "" && len(got) != 0 || want.scheme != "" && !slices.Equal(got, wantList) {
					t.Errorf("%s: security %v, want %q", r, got, want.scheme)
				}
				if r.Method == http.MethodOptions {
					continue
				}
				for _, status := range []int{401, 403, 500, 503} {
					if op.Responses.Status(status) == nil {
						t.Errorf("%s: no %d response", r, status)
					}
				}
			}
		}
	})

	t.Run("error envelope", func(t *testing.T) {
		s := errorSchema(t, doc)
		inner := s.Properties["error"]
		if inner == nil || inner.Value == nil {
			t.Fatal("ErrorEnvelope has no error property")
		}
		// Its fields are chatfleet.Error's JSON fields, required where
		// they are never omitted.
		var fields, required []string
		typ := reflect.TypeFor[chatfleet.Error]()
		for i := range typ.NumField() {
			name, opts, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
			fields = append(fields, name)
			if !strings.Contains(opts, "omitempty") {
				required = append(required, name)
			}
		}
		var documented []string
		for name := range inner.Value.Properties {
			documented = append(documented, name)
		}
		slices.Sort(fields)
		slices.Sort(documented)
		if !slices.Equal(fields, documented) {
			t.Errorf("error envelope documents %v, chatfleet.Error has %v", documented, fields)
		}
		if got := slices.Sorted(slices.Values(inner.Value.Required)); !slices.Equal(got, slices.Sorted(slices.Values(required))) {
			t.Errorf("error envelope requires %v, chatfleet.Error never omits %v", got, required)
		}
		// Every code httpx maps answers a body the schema accepts, and
		// the schema knows no other code.
		codes := []string{chatfleet.EINVALID, chatfleet.EUNAUTHORIZED, chatfleet.EFORBIDDEN, chatfleet.ENOTFOUND, chatfleet.EMETHOD,
			chatfleet.ECONFLICT, chatfleet.ETOOLARGE, chatfleet.ERATELIMIT, chatfleet.EINTERNAL, chatfleet.EUNAVAILABLE}
		var enum []string
		for _, v := range inner.Value.Properties["code"].Value.Enum {
			s, _ := v.(string)
			enum = append(enum, s)
		}
		if !slices.Equal(slices.Sorted(slices.Values(enum)), slices.Sorted(slices.Values(codes))) {
			t.Errorf("code enum %v, want %v", enum, codes)
		}
		for _, code := range codes {
			rec := httptest.NewRecorder()
			err := &chatfleet.Error{Code: code, Message: "m", Host: "h", Port: 1}
			httpx.WriteError(rec, nil, err)
			if verr := validateJSON(doc, s, rec.Body.Bytes()); verr != nil {
				t.Errorf("httpx's %s envelope %s: %v", code, rec.Body, verr)
			}
			if rec.Code != httpx.Status(code) {
				t.Errorf("%s: status %d", code, rec.Code)
			}
		}
		for _, bad := range []string{`{"error":{"code":"invalid"}}`, `{"error":{"code":"nope","message":"m"}}`, `{"data":{}}`, `{"error":{"code":"invalid","message":"m","extra":1}}`} {
			if validateJSON(doc, s, []byte(bad)) == nil {
				t.Errorf("the error envelope schema accepts %s", bad)
			}
		}
	})

	t.Run("events", func(t *testing.T) {
		dir := filepath.Join(testutil.ModuleRoot(t), "events")
		var expect []expectation
		readJSON(t, filepath.Join(dir, "expect.json"), &expect)
		for _, e := range expect {
			ev := readEvent(t, filepath.Join(dir, e.Event))
			op := operation(doc, ev.HTTPMethod, ev.Resource)
			if op == nil {
				// Outside the route tables: the handlers' 404 and 405,
				// in the error envelope (TestEvents checks the body).
				if e.Status != http.StatusNotFound && e.Status != http.StatusMethodNotAllowed {
					t.Errorf("%s: %s %s is not documented", e.Event, ev.HTTPMethod, ev.Resource)
				}
				continue
			}
			if op.Responses.Status(e.Status) == nil {
				t.Errorf("%s: %s %s documents no %d response", e.Event, ev.HTTPMethod, ev.Resource, e.Status)
			}
		}
	})
}

func readEvent(t *testing.T, path string) events.APIGatewayProxyRequest {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ev events.APIGatewayProxyRequest
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return ev
}

// checkOpenAPIAnswer checks one event's answer under the emulator against
// docs/openapi.yaml: the status is a documented response of the event's
// route and the body validates against that response's schema (no body
// where it has none); a 2xx request's body validates against the route's
// request schema. An event outside the route tables must answer the error
// envelope.
func checkOpenAPIAnswer(t *testing.T, e expectation, event []byte, resp events.APIGatewayProxyResponse) {
	t.Helper()
	doc := loadOpenAPI(t)
	var ev events.APIGatewayProxyRequest
	if err := json.Unmarshal(event, &ev); err != nil {
		t.Fatalf("%s: %v", e.Event, err)
	}
	op := operation(doc, ev.HTTPMethod, ev.Resource)
	if op == nil {
		if err := validateJSON(doc, errorSchema(t, doc), []byte(resp.Body)); err != nil {
			t.Errorf("%s: %d %s is not the documented error envelope: %v", e.Event, resp.StatusCode, resp.Body, err)
		}
		return
	}
	where := e.Event + ": " + ev.HTTPMethod + " " + ev.Resource + " " + strconv.Itoa(resp.StatusCode)
	ref := op.Responses.Status(resp.StatusCode)
	if ref == nil || ref.Value == nil {
		t.Errorf("%s: status not documented", where)
		return
	}
	schema := jsonSchema(t, ref.Value.Content)
	switch {
	case schema == nil && resp.Body != "":
		t.Errorf("%s: documented without a body, answered %s", where, resp.Body)
	case schema != nil:
		if err := validateJSON(doc, schema, []byte(resp.Body)); err != nil {
			t.Errorf("%s: the answer does not match the documented schema: %v\n%s", where, err, resp.Body)
		}
	}
	if resp.StatusCode/100 == 2 && ev.Body != "" {
		if op.RequestBody == nil || op.RequestBody.Value == nil {
			t.Errorf("%s: the request has a body, the route documents none", where)
			return
		}
		if err := validateJSON(doc, jsonSchema(t, op.RequestBody.Value.Content), []byte(ev.Body)); err != nil {
			t.Errorf("%s: the request body %s does not match the documented schema: %v", where, ev.Body, err)
		}
	}
}

// TestOpenAPIRejects checks that the schemas are strict enough to fail: a
// document answer with a field of the wrong type, a missing required field
// or an error where data belongs does not validate.
func TestOpenAPIRejects(t *testing.T) {
	doc := loadOpenAPI(t)
	get := jsonSchema(t, operation(doc, "GET", "/api/v1/rooms/{name}").Responses.Status(200).Value.Content)
	good := `{"data":{"name":"demo","status":"live","producer":"live","producerLive":true,"viewers":3,"hostId":"h","host":"127.0.0.1","port":40000,"ownerId":"o","createdAt":"2026-01-01T00:00:00Z","updatedAt":"2026-01-01T00:00:00Z"}}`
	if err := validateJSON(doc, get, []byte(good)); err != nil {
		t.Fatalf("a good room: %v", err)
	}
	for _, bad := range []string{
		strings.Replace(good, `"viewers":3`, `"viewers":"3"`, 1),
		strings.Replace(good, `"status":"live"`, `"status":"gone"`, 1),
		strings.Replace(good, `"hostId":"h",`, ``, 1),
		`{"error":{"code":"not_found","message":"m"}}`,
	} {
		if err := validateJSON(doc, get, []byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
	create := jsonSchema(t, operation(doc, "POST", "/api/v1/rooms/{name}").RequestBody.Value.Content)
	for _, bad := range []string{`{"bogus":1}`, `{"webhookUrls":["https://a","https://b","https://c","https://d","https://e","https://f"]}`, `{"ownerName":"` + strings.Repeat("x", 65) + `"}`} {
		if err := validateJSON(doc, create, []byte(bad)); err == nil {
			t.Errorf("create body %s accepted", bad)
		}
	}
}
