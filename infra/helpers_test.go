package infra

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/chatfleet/chatfleet/internal/testutil"
)

const modulePath = "github.com/chatfleet/chatfleet"

// root returns the module root.
func root(t testing.TB) string {
	t.Helper()
	return testutil.ModuleRoot(t)
}

// readRepo returns the file at rel (slash-separated, from the module root).
func readRepo(t testing.TB, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), filepath.FromSlash(rel)))
	if err != nil {
		t.Fatalf("read %s: %v", rel, err)
	}
	return string(b)
}

// envFuncs are the calls whose first string argument names an environment
// variable: os.Getenv/LookupEnv and a getenv parameter (hostinfo, entitle,
// roomproc). envVarsRead adds the getters of internal/envconf's Reader,
// which every ConfigFromEnv reads through (envconfGetters).
var envFuncs = map[string]bool{"Getenv": true, "LookupEnv": true, "getenv": true}

// envconfGetters returns the methods of internal/envconf's Reader whose
// first parameter is the variable's name: Str, Int, Dur and the others,
// found in the source so that a getter added later is not missed.
func envconfGetters(t testing.TB) map[string]bool {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root(t), "internal", "envconf", "envconf.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	getters := map[string]bool{}
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Recv == nil || !fn.Name.IsExported() || len(fn.Type.Params.List) == 0 {
			continue
		}
		if first := fn.Type.Params.List[0]; len(first.Names) > 0 && first.Names[0].Name == "name" {
			getters[fn.Name.Name] = true
		}
	}
	if len(getters) < 5 {
		t.Fatalf("found only the getters %v in internal/envconf", sortedKeys(getters))
	}
	return getters
}

var envNameRE = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// envVarsRead returns the environment variables the main package in cmdDir
// (e.g. "fleet/cmd/chatserver") and the packages of this module it imports,
// directly or not, read by name. Test files are not read.
func envVarsRead(t testing.TB, cmdDir string) map[string]bool {
	t.Helper()
	vars := map[string]bool{}
	seen := map[string]bool{}
	queue := []string{cmdDir}
	fset := token.NewFileSet()
	funcs := envconfGetters(t)
	maps.Copy(funcs, envFuncs)
	for len(queue) > 0 {
		dir := queue[0]
		queue = queue[1:]
		if seen[dir] {
			continue
		}
		seen[dir] = true
		entries, err := os.ReadDir(filepath.Join(root(t), filepath.FromSlash(dir)))
		if err != nil {
			t.Fatalf("package %s imported by %s: %v", dir, cmdDir, err)
		}
		for _, e := range entries {
			name := e.Name()
			if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, filepath.Join(root(t), filepath.FromSlash(dir), name), nil, 0)
			if err != nil {
				t.Fatalf("parse %s/%s: %v", dir, name, err)
			}
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				if p == modulePath {
					queue = append(queue, ".")
				} else if rest, ok := strings.CutPrefix(p, modulePath+"/"); ok {
					queue = append(queue, rest)
				}
			}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) == 0 {
					return true
				}
				var fn string
				switch f := call.Fun.(type) {
				case *ast.Ident:
					fn = f.Name
				case *ast.SelectorExpr:
					fn = f.Sel.Name
				}
				if !funcs[fn] {
					return true
				}
				if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil && envNameRE.MatchString(s) {
						vars[s] = true
					}
				}
				return true
			})
		}
	}
	return vars
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// envFile is a systemd EnvironmentFile: the variables it sets, and those it
// documents in comments ("#NAME=default").
type envFile struct {
	set       map[string]string
	commented map[string]bool
}

var commentedVarRE = regexp.MustCompile(`^#\s*([A-Z][A-Z0-9_]*)=`)

func parseEnvFile(t testing.TB, text string) envFile {
	t.Helper()
	ef := envFile{set: map[string]string{}, commented: map[string]bool{}}
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
		case strings.HasPrefix(line, "#"):
			if m := commentedVarRE.FindStringSubmatch(line); m != nil {
				ef.commented[m[1]] = true
			}
		default:
			name, value, ok := strings.Cut(line, "=")
			if !ok || !envNameRE.MatchString(name) {
				t.Errorf("line %d: %q is not NAME=value", n, line)
				continue
			}
			if _, dup := ef.set[name]; dup {
				t.Errorf("line %d: %s set twice", n, name)
			}
			ef.set[name] = value
		}
	}
	return ef
}

// unit is a parsed systemd unit file: section -> key -> values in order.
type unit map[string]map[string][]string

func parseUnit(t testing.TB, text string) unit {
	t.Helper()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("line %d: %q is not key=value in a section", n, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

// last returns the effective (last) value of key in section, or "".
func (u unit) last(section, key string) string {
	vs := u[section][key]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// systemdSeconds parses a systemd time span such as "30s", "1min 30s" or "45".
func systemdSeconds(t testing.TB, s string) float64 {
	t.Helper()
	units := map[string]float64{"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "ms": 0.001}
	var total float64
	for _, part := range strings.Fields(s) {
		i := strings.IndexFunc(part, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
		num, unit := part, ""
		if i >= 0 {
			num, unit = part[:i], part[i:]
		}
		f, err := strconv.ParseFloat(num, 64)
		mul, ok := units[unit]
		if err != nil || !ok {
			t.Fatalf("time span %q: cannot parse %q", s, part)
		}
		total += f * mul
	}
	return total
}

// selfSignedCert writes a certificate for 127.0.0.1 and localhost and its
// key to dir, and returns their paths and the certificate's PEM.
func selfSignedCert(t testing.TB, dir string) (certFile, keyFile string, certPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "chatfleet infra test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	certFile, keyFile = filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, certPEM
}

// replaceOnce replaces old by new in s, failing t unless old occurs exactly
// once (the file changed shape: the test must follow).
func replaceOnce(t testing.TB, s, old, new string) string {
	t.Helper()
	if n := strings.Count(s, old); n != 1 {
		t.Fatalf("expected %q exactly once in the nginx configuration, found %d", old, n)
	}
	return strings.Replace(s, old, new, 1)
}

// defaultRoomRange reads the default room port range from the master's
// setDefaults (fleet/internal/master/master.go), having checked that
// ConfigFromEnv leaves ROOM_PORT_MIN and ROOM_PORT_MAX to it.
func defaultRoomRange(t testing.TB) (lo, hi int) {
	t.Helper()
	cfg := readRepo(t, "fleet/internal/master/config.go")
	for _, v := range []string{"ROOM_PORT_MIN", "ROOM_PORT_MAX"} {
		if !regexp.MustCompile(`r\.Int\("` + v + `",\s*0\)`).MatchString(cfg) {
			t.Fatalf("fleet/internal/master/config.go does not read %s with default 0 (r.Int(%q, 0)): where is its default now?", v, v)
		}
	}
	src := readRepo(t, "fleet/internal/master/master.go")
	m1 := regexp.MustCompile(`c\.RoomPortMin = (\d+)`).FindStringSubmatch(src)
	m2 := regexp.MustCompile(`c\.RoomPortMax = c\.RoomPortMin \+ (\d+)`).FindStringSubmatch(src)
	if m1 == nil || m2 == nil {
		t.Fatal("cannot find the default room port range in fleet/internal/master/master.go")
	}
	lo, _ = strconv.Atoi(m1[1])
	width, _ := strconv.Atoi(m2[1])
	return lo, lo + width
}

// nginxRoomRegex returns the room-port regular expression of the
// configuration's map (the line `"~REGEX" 1;`).
func nginxRoomRegex(t testing.TB, conf string) (line, re string) {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*"~([^"]+)"\s+1;.*$`).FindAllStringSubmatch(conf, -1)
	if len(m) != 1 {
		t.Fatalf("expected one room port map entry (\"~REGEX\" 1;) in the nginx configuration, found %d", len(m))
	}
	return strings.TrimSpace(m[0][0]), m[0][1]
}

// portsMatched returns the lowest and highest port the regular expression
// matches and whether the matches are exactly that contiguous range.
func portsMatched(t testing.TB, expr string) (lo, hi int, contiguous bool) {
	t.Helper()
	re, err := regexp.Compile(expr)
	if err != nil {
		t.Fatalf("room port regex %q: %v", expr, err)
	}
	lo, hi, n := 0, 0, 0
	for p := 1; p <= 65535; p++ {
		if re.MatchString(strconv.Itoa(p)) {
			if n == 0 {
				lo = p
			}
			hi = p
			n++
		}
	}
	return lo, hi, n > 0 && n == hi-lo+1
}

// cfnPseudo are CloudFormation's pseudo parameters.
var cfnPseudo = map[string]bool{
	"AWS::AccountId": true, "AWS::NotificationARNs": true, "AWS::NoValue": true, "AWS::Partition": true,
	"AWS::Region": true, "AWS::StackId": true, "AWS::StackName": true, "AWS::URLSuffix": true,
}

// cfnFuncTags are the short-form intrinsic functions, as YAML tags.
var cfnFuncTags = map[string]string{
	"!Ref": "Ref", "!Condition": "Condition", "!GetAtt": "Fn::GetAtt", "!Sub": "Fn::Sub", "!Join": "Fn::Join",
	"!Select": "Fn::Select", "!GetAZs": "Fn::GetAZs", "!Base64": "Fn::Base64", "!If": "Fn::If",
	"!Equals": "Fn::Equals", "!Not": "Fn::Not", "!And": "Fn::And", "!Or": "Fn::Or", "!FindInMap": "Fn::FindInMap",
	"!ImportValue": "Fn::ImportValue", "!Split": "Fn::Split", "!Cidr": "Fn::Cidr",
}

// parseCFN reads a CloudFormation YAML template into plain maps, slices and
// strings, with the short-form intrinsic tags turned into their long form
// ({"Ref": x}, {"Fn::Sub": x}, ...). Scalars stay strings.
func parseCFN(t testing.TB, text string) map[string]any {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatalf("YAML: %v", err)
	}
	v, err := cfnValue(&doc)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatal("template is not a mapping")
	}
	return m
}

func cfnValue(n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.DocumentNode:
		return cfnValue(n.Content[0])
	case yaml.AliasNode:
		return cfnValue(n.Alias)
	}
	var v any
	switch n.Kind {
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			val, err := cfnValue(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			m[n.Content[i].Value] = val
		}
		v = m
	case yaml.SequenceNode:
		l := []any{}
		for _, c := range n.Content {
			val, err := cfnValue(c)
			if err != nil {
				return nil, err
			}
			l = append(l, val)
		}
		v = l
	default:
		v = n.Value
	}
	if !strings.HasPrefix(n.Tag, "!") || strings.HasPrefix(n.Tag, "!!") {
		return v, nil
	}
	fn, ok := cfnFuncTags[n.Tag]
	if !ok {
		return nil, fmt.Errorf("line %d: unknown tag %s", n.Line, n.Tag)
	}
	if s, isStr := v.(string); isStr && fn == "Fn::GetAtt" {
		res, attr, ok := strings.Cut(s, ".")
		if !ok {
			return nil, fmt.Errorf("line %d: !GetAtt %q: want Resource.Attribute", n.Line, s)
		}
		v = []any{res, attr}
	}
	return map[string]any{fn: v}, nil
}

// cfnRefs is what a template refers to.
type cfnRefs struct {
	refs       map[string][]string // Ref and ${Name} targets -> where
	getAtts    map[string][]string // Fn::GetAtt and ${Res.Attr} resources -> where
	conditions map[string][]string // Condition names used -> where
}

var subVarRE = regexp.MustCompile(`\$\{([^}]*)\}`)

// collectRefs walks v (found at path) and records every reference.
func (c *cfnRefs) collect(v any, path string) {
	switch x := v.(type) {
	case []any:
		for i, e := range x {
			c.collect(e, fmt.Sprintf("%s[%d]", path, i))
		}
	case map[string]any:
		if len(x) == 1 {
			for fn, arg := range x {
				switch fn {
				case "Ref":
					if s, ok := arg.(string); ok {
						c.refs[s] = append(c.refs[s], path)
						return
					}
				case "Fn::GetAtt":
					if l, ok := arg.([]any); ok && len(l) == 2 {
						if s, ok := l[0].(string); ok {
							c.getAtts[s] = append(c.getAtts[s], path)
							return
						}
					}
				case "Fn::Sub":
					c.collectSub(arg, path)
					return
				case "Fn::If":
					if l, ok := arg.([]any); ok && len(l) == 3 {
						if s, ok := l[0].(string); ok {
							c.conditions[s] = append(c.conditions[s], path)
						}
						c.collect(l[1], path+".If[1]")
						c.collect(l[2], path+".If[2]")
						return
					}
				}
			}
		}
		for k, e := range x {
			if k == "Condition" {
				if s, ok := e.(string); ok {
					c.conditions[s] = append(c.conditions[s], path)
					continue
				}
			}
			c.collect(e, path+"."+k)
		}
	}
}

func (c *cfnRefs) collectSub(arg any, path string) {
	var s string
	locals := map[string]bool{}
	switch a := arg.(type) {
	case string:
		s = a
	case []any:
		if len(a) != 2 {
			bad := "<Fn::Sub with " + strconv.Itoa(len(a)) + " arguments>"
			c.refs[bad] = append(c.refs[bad], path)
			return
		}
		s, _ = a[0].(string)
		if vars, ok := a[1].(map[string]any); ok {
			for k, v := range vars {
				locals[k] = true
				c.collect(v, path+".Sub."+k)
			}
		}
	}
	for _, m := range subVarRE.FindAllStringSubmatch(s, -1) {
		name := m[1]
		if strings.HasPrefix(name, "!") || locals[name] {
			continue // ${!Literal} is text
		}
		if res, _, ok := strings.Cut(name, "."); ok && !cfnPseudo[name] {
			c.getAtts[res] = append(c.getAtts[res], path)
		} else {
			c.refs[name] = append(c.refs[name], path)
		}
	}
}

// section returns the template's top-level mapping name (or an empty map).
func section(tpl map[string]any, name string) map[string]any {
	m, _ := tpl[name].(map[string]any)
	if m == nil {
		m = map[string]any{}
	}
	return m
}

// dig walks v by mapping keys.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// asList returns v as a list: itself if it is one, else a list of v (or
// empty for nil).
func asList(v any) []any {
	switch l := v.(type) {
	case nil:
		return nil
	case []any:
		return l
	}
	return []any{v}
}

// heredoc returns the lines of the here-document of script that starts on
// the line containing opener, up to its terminator.
func heredoc(t testing.TB, script, opener string) []string {
	t.Helper()
	i := strings.Index(script, opener)
	if i < 0 {
		t.Fatalf("user data: no %q", opener)
	}
	lines := strings.Split(script[i:], "\n")
	m := regexp.MustCompile(`<<-?'?(\w+)'?`).FindStringSubmatch(lines[0])
	if m == nil {
		t.Fatalf("user data: %q opens no here-document", lines[0])
	}
	for j, l := range lines[1:] {
		if l == m[1] {
			return lines[1 : j+1]
		}
	}
	t.Fatalf("user data: here-document %q is not terminated", opener)
	return nil
}

// composeEnv returns a compose service's environment as a map, whether
// written as a mapping or as a list of NAME=value.
func composeEnv(t testing.TB, svc map[string]any) map[string]string {
	t.Helper()
	out := map[string]string{}
	switch env := svc["environment"].(type) {
	case nil:
	case map[string]any:
		for k, v := range env {
			out[k] = fmt.Sprint(v)
		}
	case []any:
		for _, e := range env {
			k, v, _ := strings.Cut(fmt.Sprint(e), "=")
			out[k] = v
		}
	default:
		t.Fatalf("environment: unexpected %T", env)
	}
	return out
}

// dockerfile is a parsed Dockerfile: its stages in order.
type dockerStage struct {
	from  string
	name  string
	instr [][2]string // instruction (upper case), arguments
}

func parseDockerfile(text string) []dockerStage {
	var stages []dockerStage
	var cur *dockerStage
	// Join continuation lines first.
	var logical []string
	var b bytes.Buffer
	for _, l := range strings.Split(text, "\n") {
		trim := strings.TrimSpace(l)
		if b.Len() == 0 && (trim == "" || strings.HasPrefix(trim, "#")) {
			continue
		}
		if strings.HasSuffix(trim, "\\") {
			b.WriteString(strings.TrimSuffix(trim, "\\") + " ")
			continue
		}
		b.WriteString(trim)
		logical = append(logical, b.String())
		b.Reset()
	}
	for _, l := range logical {
		ins, args, _ := strings.Cut(l, " ")
		ins = strings.ToUpper(ins)
		args = strings.TrimSpace(args)
		if ins == "FROM" {
			f := strings.Fields(args)
			st := dockerStage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			stages = append(stages, st)
			cur = &stages[len(stages)-1]
			continue
		}
		if cur != nil {
			cur.instr = append(cur.instr, [2]string{ins, args})
		}
	}
	return stages
}
