package functions_test

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/awslabs/goformation/v7"
	"gopkg.in/yaml.v3"

	"github.com/chatfleet/chatfleet/functions/api"
	"github.com/chatfleet/chatfleet/internal/netguard"
	"github.com/chatfleet/chatfleet/internal/testutil"
)

// readTemplate reads a CloudFormation YAML template into plain maps and
// lists, with the short-form intrinsic tags (!Ref, !Sub, !GetAtt, !If...)
// turned into their long forms ({"Ref": ...}, {"Fn::Sub": ...}).
func readTemplate(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	longForm(&doc)
	var out map[string]any
	if err := doc.Decode(&out); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return out
}

// longForm rewrites every node tagged !Name into {"Fn::Name": node}, or
// {"Ref": node} and {"Condition": node} for !Ref and !Condition.
func longForm(n *yaml.Node) {
	for _, c := range n.Content {
		longForm(c)
	}
	if !strings.HasPrefix(n.Tag, "!") || strings.HasPrefix(n.Tag, "!!") {
		return
	}
	name := strings.TrimPrefix(n.Tag, "!")
	key := "Fn::" + name
	if name == "Ref" || name == "Condition" {
		key = name
	}
	inner := *n
	inner.Tag = ""
	if inner.Kind == yaml.ScalarNode {
		inner.Tag = "!!str"
	}
	*n = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{
		{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, &inner,
	}}
}

// at walks v along keys (map keys) and returns what is there, or nil.
func at(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func str(v any, keys ...string) string {
	s, _ := at(v, keys...).(string)
	return s
}

// ref returns the logical id v refers to with Ref or Fn::GetAtt, or "".
func ref(v any) string {
	if s := str(v, "Ref"); s != "" {
		return strings.TrimSuffix(s, ".Stage")
	}
	switch g := at(v, "Fn::GetAtt").(type) {
	case string:
		return strings.Split(g, ".")[0]
	case []any:
		if len(g) > 0 {
			s, _ := g[0].(string)
			return s
		}
	}
	return ""
}

// dynamicSecret reports whether v is a Secrets Manager dynamic reference to key.
func dynamicSecret(v any, key string) bool {
	s := str(v, "Fn::Sub")
	return strings.HasPrefix(s, "{{resolve:secretsmanager:") && strings.HasSuffix(s, ":SecretString:"+key+"}}")
}

// envRead are the variables ConfigFromEnv reads; a template variable
// outside this list is a typo.
var envRead = []string{
	"MONGODB_URI", "MONGODB_DATABASE", "LOADBALANCERS", "LOADBALANCER_KEY", "LOADBALANCER_CA_FILE",
	"TOKEN_SECRET", "API_KEY", "ADMIN_API_KEY", "FLEET_KEY", "FLEET_ADMIN_KEY", "REQUEST_TIMEOUT", "LOG_LEVEL",
	"FLEET_HOSTS_ALLOW", "WEBHOOK_ALLOW_PRIVATE", "MAX_FLEET_BANS", "CORS_ALLOWED_ORIGINS",
}

// TestTemplate checks template.yaml against the code: every function's
// CodeUri builds as a static bootstrap (and resolves for arm64), its API events are exactly the
// routes its handler serves, on an API that requires its own key, and its
// secrets come from Secrets Manager, each function holding only its own.
func TestTemplate(t *testing.T) {
	root := testutil.ModuleRoot(t)
	path := filepath.Join(root, "template.yaml")

	// goformation knows the CloudFormation and SAM schemas, but not every
	// property SAM takes now (LoggingConfig, for one): use it where it can
	// read the template, and read the YAML itself in any case.
	if tpl, err := goformation.Open(path); err != nil {
		t.Logf("goformation cannot read the template (%v); checking it as YAML only", err)
	} else if n := len(tpl.GetAllServerlessFunctionResources()); n != 2 {
		t.Errorf("goformation finds %d functions, want 2", n)
	}

	tpl := readTemplate(t, path)
	if tr := str(tpl, "Transform"); tr != "AWS::Serverless-2016-10-31" {
		t.Errorf("Transform %q", tr)
	}
	resources, _ := at(tpl, "Resources").(map[string]any)
	globals := at(tpl, "Globals", "Function")
	prop := func(fn any, key string) any {
		if v := at(fn, "Properties", key); v != nil {
			return v
		}
		return at(globals, key)
	}
	ofType := func(typ string) []string {
		var ids []string
		for id, r := range resources {
			if str(r, "Type") == typ {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		return ids
	}

	functions := map[string]struct {
		routes  []api.Route
		secrets []string // the secret variables it must have
		never   []string // and those it must not
		apiKey  string   // the secret key of its API's API key
	}{
		"functions/rooms": {append(slices.Clone(api.RoomRoutes), api.RoomPreflightRoutes...), []string{"MONGODB_URI", "LOADBALANCER_KEY", "TOKEN_SECRET", "API_KEY", "FLEET_KEY"},
			[]string{"ADMIN_API_KEY", "FLEET_ADMIN_KEY"}, "API_KEY"},
		"functions/admin": {api.AdminRoutes, []string{"MONGODB_URI", "LOADBALANCER_KEY", "ADMIN_API_KEY", "FLEET_ADMIN_KEY"},
			[]string{"TOKEN_SECRET", "API_KEY", "FLEET_KEY"}, "ADMIN_API_KEY"},
	}
	seenCode := map[string]bool{}
	apisUsed := map[string]string{} // API id -> CodeUri
	for _, id := range ofType("AWS::Serverless::Function") {
		fn := resources[id]
		t.Run(id, func(t *testing.T) {
			codeURI := strings.TrimSuffix(str(prop(fn, "CodeUri")), "/")
			want, ok := functions[codeURI]
			if !ok {
				t.Fatalf("CodeUri %q is not a known function folder", codeURI)
			}
			seenCode[codeURI] = true
			if _, err := os.Stat(filepath.Join(root, codeURI, "main.go")); err != nil {
				t.Fatalf("CodeUri %s: %v", codeURI, err)
			}
			checkBuilds(t, root, codeURI)

			if v := str(prop(fn, "Runtime")); v != "provided.al2023" {
				t.Errorf("Runtime %q", v)
			}
			if v := str(prop(fn, "Handler")); v != "bootstrap" {
				t.Errorf("Handler %q", v)
			}
			if v, _ := prop(fn, "Architectures").([]any); len(v) != 1 || v[0] != "arm64" {
				t.Errorf("Architectures %v", v)
			}
			if v := str(fn, "Metadata", "BuildMethod"); v != "go1.x" {
				t.Errorf("Metadata.BuildMethod %q", v)
			}
			if v := str(prop(fn, "LoggingConfig"), "LogFormat"); v != "JSON" {
				t.Errorf("LoggingConfig.LogFormat %q", v)
			}
			if at(prop(fn, "VpcConfig"), "SubnetIds") == nil || at(prop(fn, "VpcConfig"), "SecurityGroupIds") == nil {
				t.Error("no VpcConfig: the hosts' admin ports are private")
			}
			checkRole(t, resources, ref(prop(fn, "Role")))

			vars, _ := at(prop(fn, "Environment"), "Variables").(map[string]any)
			for name, v := range vars {
				if !slices.Contains(envRead, name) {
					t.Errorf("environment variable %s is not one the function reads", name)
				}
				secret := strings.Contains(name, "KEY") || strings.Contains(name, "SECRET") || name == "MONGODB_URI"
				if secret && !dynamicSecret(v, name) {
					t.Errorf("%s is not a Secrets Manager dynamic reference to the key %s: %v", name, name, v)
				}
			}
			for _, name := range want.secrets {
				if vars[name] == nil {
					t.Errorf("environment lacks %s", name)
				}
			}
			if ref(vars["FLEET_HOSTS_ALLOW"]) != "FleetHostsAllow" {
				t.Errorf("FLEET_HOSTS_ALLOW is %v, want the parameter FleetHostsAllow", vars["FLEET_HOSTS_ALLOW"])
			}
			if cors := ref(vars["CORS_ALLOWED_ORIGINS"]); (codeURI == "functions/rooms") != (cors == "CorsAllowedOrigins") {
				t.Errorf("CORS_ALLOWED_ORIGINS is %v; want the parameter CorsAllowedOrigins on the room API only", vars["CORS_ALLOWED_ORIGINS"])
			}
			for _, name := range want.never {
				if vars[name] != nil {
					t.Errorf("environment holds %s, which this function does not need", name)
				}
			}

			var routes []api.Route
			apiID := ""
			events, _ := at(fn, "Properties", "Events").(map[string]any)
			for name, ev := range events {
				if str(ev, "Type") != "Api" {
					t.Errorf("event %s is %q, want Api (a REST API)", name, str(ev, "Type"))
					continue
				}
				route := api.Route{Method: strings.ToUpper(str(ev, "Properties", "Method")), Path: str(ev, "Properties", "Path")}
				routes = append(routes, route)
				// Browsers send no key with a CORS preflight: only those
				// routes are open, every other keeps the API's key.
				keyRequired, set := at(ev, "Properties", "Auth", "ApiKeyRequired").(bool)
				if preflight := route.Method == "OPTIONS"; preflight && (!set || keyRequired) {
					t.Errorf("event %s (%s) does not set Auth.ApiKeyRequired: false", name, route)
				} else if !preflight && at(ev, "Properties", "Auth") != nil {
					t.Errorf("event %s (%s) overrides the API's Auth", name, route)
				}
				rid := ref(at(ev, "Properties", "RestApiId"))
				if apiID != "" && rid != apiID {
					t.Errorf("event %s is on %s, the others on %s", name, rid, apiID)
				}
				apiID = rid
			}
			for _, r := range want.routes {
				if !slices.Contains(routes, r) {
					t.Errorf("the handler serves %s, the template does not route it", r)
				}
			}
			for _, r := range routes {
				if !slices.Contains(want.routes, r) {
					t.Errorf("the template routes %s, the handler does not serve it", r)
				}
			}
			if other, ok := apisUsed[apiID]; ok {
				t.Errorf("%s shares API %s with %s: each API has its own key", codeURI, apiID, other)
			}
			apisUsed[apiID] = codeURI
			checkAPI(t, resources, apiID, want.apiKey)
		})
	}
	for code := range functions {
		if !seenCode[code] {
			t.Errorf("no function has CodeUri %s", code)
		}
	}
	if d := str(tpl, "Parameters", "FleetHostsAllow", "Default"); d != netguard.Private {
		t.Errorf("FleetHostsAllow defaults to %q, want netguard.Private %q", d, netguard.Private)
	}
	for _, out := range []string{"RoomApiUrl", "AdminApiUrl", "RoomApiKeyId", "AdminApiKeyId"} {
		if at(tpl, "Outputs", out, "Value") == nil {
			t.Errorf("no output %s", out)
		}
	}

	t.Run("samconfig", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(root, "samconfig.toml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, section := range []string{"[dev.deploy.parameters]", "[prod.deploy.parameters]", "[dev.build.parameters]", "[prod.build.parameters]"} {
			if !strings.Contains(string(b), section) {
				t.Errorf("samconfig.toml has no %s", section)
			}
		}
	})
}

// checkAPI checks that API id requires an API key on every method, and that
// a usage plan on it holds a key whose value is the secret's secretKey.
func checkAPI(t *testing.T, resources map[string]any, id, secretKey string) {
	t.Helper()
	a := resources[id]
	if str(a, "Type") != "AWS::Serverless::Api" {
		t.Fatalf("RestApiId %q is not an AWS::Serverless::Api", id)
	}
	if at(a, "Properties", "Auth", "ApiKeyRequired") != true {
		t.Errorf("%s: Auth.ApiKeyRequired is not true", id)
	}
	keyed := false
	for planID, plan := range resources {
		if str(plan, "Type") != "AWS::ApiGateway::UsagePlan" {
			continue
		}
		stages, _ := at(plan, "Properties", "ApiStages").([]any)
		onAPI := false
		for _, s := range stages {
			onAPI = onAPI || ref(at(s, "ApiId")) == id
		}
		if !onAPI {
			continue
		}
		for _, pk := range resources {
			if str(pk, "Type") != "AWS::ApiGateway::UsagePlanKey" || ref(at(pk, "Properties", "UsagePlanId")) != planID {
				continue
			}
			key := resources[ref(at(pk, "Properties", "KeyId"))]
			if str(key, "Type") == "AWS::ApiGateway::ApiKey" && dynamicSecret(at(key, "Properties", "Value"), secretKey) {
				keyed = true
			}
		}
	}
	if !keyed {
		t.Errorf("%s: no usage plan holds an API key whose value is the secret's %s", id, secretKey)
	}
}

// checkRole checks the function's role allows no wildcard action and
// nothing of Secrets Manager (the secrets are resolved at deploy time).
func checkRole(t *testing.T, resources map[string]any, id string) {
	t.Helper()
	role := resources[id]
	if str(role, "Type") != "AWS::IAM::Role" {
		t.Fatalf("Role %q is not an AWS::IAM::Role of the template", id)
	}
	if at(role, "Properties", "ManagedPolicyArns") != nil {
		t.Error("the role has managed policies; list the actions it needs")
	}
	policies, _ := at(role, "Properties", "Policies").([]any)
	for _, p := range policies {
		stmts, _ := at(p, "PolicyDocument", "Statement").([]any)
		for _, s := range stmts {
			actions, _ := at(s, "Action").([]any)
			if a := str(s, "Action"); a != "" {
				actions = append(actions, a)
			}
			for _, a := range actions {
				a, _ := a.(string)
				if a == "*" || strings.HasSuffix(a, ":*") || strings.HasPrefix(a, "secretsmanager:") {
					t.Errorf("role %s allows %s", id, a)
				}
			}
		}
	}
}

// checkBuilds builds the package in codeURI as the deployment does (static,
// without the RPC mode of aws-lambda-go) for this machine's architecture,
// whose build cache the other tests share, and checks that every package it
// needs resolves for linux/arm64 without cgo. (A cold arm64 build of the
// whole dependency graph takes minutes; `make lambdas` does it.)
func checkBuilds(t *testing.T, root, codeURI string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "bootstrap")
	cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags", "-s -w", "-o", out, "./"+codeURI)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", codeURI, err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Section(".interp") != nil {
		t.Error("bootstrap is dynamically linked")
	}

	cmd = exec.Command("go", "list", "-e", "-deps", "-tags", "lambda.norpc",
		"-f", "{{with .Error}}{{.}}{{end}}{{range .DepsErrors}}{{.}}{{end}}", "./"+codeURI)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	b, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(b)) != "" {
		t.Errorf("%s does not resolve for linux/arm64 without cgo: %v\n%s", codeURI, err, b)
	}
}

// TestNoDevDependencies checks that the Lambda binaries link neither the
// embedded store (FerretDB, SQLite) nor test helpers.
func TestNoDevDependencies(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "./functions/rooms", "./functions/admin")
	cmd.Dir = testutil.ModuleRoot(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list found %d packages; is the command right?", len(deps))
	}
	for _, p := range deps {
		for _, bad := range []string{"github.com/FerretDB/", "modernc.org/sqlite", "github.com/chatfleet/chatfleet/devstore", "github.com/chatfleet/chatfleet/internal/testutil"} {
			if strings.HasPrefix(p, bad) {
				t.Errorf("the Lambda functions link %s", p)
			}
		}
	}
}
