package daemonset

import (
	"bufio"
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper case: FROM, RUN, COPY, ...
	args string
}

// parseDockerfile reads the instructions of a Dockerfile: comments and blank lines
// dropped, lines ending in a backslash joined with the next.
func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if rest, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(rest + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.Join(strings.Fields(args), " ")})
		cur.Reset()
	}
	if cur.Len() > 0 {
		t.Fatalf("%s: the last instruction ends in a line continuation", path)
	}
	return out
}

// repoRoot is the module root, the Dockerfile's build context.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("the build context %s has no go.mod: %v", root, err)
	}
	return root
}

var (
	fromRE     = regexp.MustCompile(`^(?:--platform=\S+ )?(\S+)(?: (?i:as) (\S+))?$`)
	copyFromRE = regexp.MustCompile(`--from=(\S+)`)
	xFlagRE    = regexp.MustCompile(`-X ([^= ]+)\.([A-Za-z_][A-Za-z0-9_]*)=`)
	ldflagsRE  = regexp.MustCompile(`-ldflags "([^"]*)"`)
)

func TestDockerfile(t *testing.T) {
	root := repoRoot(t)
	ins := parseDockerfile(t, "Dockerfile")

	// Stages: a Go builder and a Debian runtime, the second the final image.
	var stages []string
	var bases []string
	for _, in := range ins {
		if in.cmd != "FROM" {
			continue
		}
		m := fromRE.FindStringSubmatch(in.args)
		if m == nil {
			t.Fatalf("line %d: cannot parse FROM %s", in.line, in.args)
		}
		bases, stages = append(bases, m[1]), append(stages, m[2])
	}
	if !slices.Equal(bases, []string{"golang:1.26-bookworm", "debian:bookworm-slim"}) {
		t.Errorf("base images = %v, want the golang:1.26-bookworm builder and a debian:bookworm-slim runtime", bases)
	}
	if gomod, err := os.ReadFile(filepath.Join(root, "go.mod")); err != nil || !regexp.MustCompile(`(?m)^go 1\.26(\.\d+)?$`).Match(gomod) {
		t.Errorf("go.mod does not ask for Go 1.26, which the builder image provides (%v)", err)
	}

	// Every COPY --from names an earlier stage; every plain COPY source exists in the
	// build context.
	seen := 0
	for _, in := range ins {
		switch in.cmd {
		case "FROM":
			seen++
		case "COPY", "ADD":
			fields := strings.Fields(in.args)
			var srcs []string
			from := ""
			for _, f := range fields {
				if m := copyFromRE.FindStringSubmatch(f); m != nil {
					from = m[1]
				} else if !strings.HasPrefix(f, "--") {
					srcs = append(srcs, f)
				}
			}
			srcs = srcs[:len(srcs)-1] // the last one is the destination
			if from != "" {
				if !slices.Contains(stages[:seen-1], from) {
					t.Errorf("line %d: COPY --from=%s does not name an earlier stage (earlier: %v)", in.line, from, stages[:seen-1])
				}
				continue
			}
			for _, s := range srcs {
				if _, err := os.Stat(filepath.Join(root, s)); err != nil {
					t.Errorf("line %d: COPY source %s: %v", in.line, s, err)
				}
			}
		}
	}

	// The runtime has the tools a node proxy needs, without recommended extras.
	var install string
	for _, in := range ins {
		if in.cmd == "RUN" && strings.Contains(in.args, "apt-get install") {
			install = in.args
		}
	}
	for _, want := range []string{"--no-install-recommends", " iptables ", " ipset ", " conntrack ", " kmod ", "rm -rf /var/lib/apt/lists"} {
		if !strings.Contains(install+" ", want) {
			t.Errorf("apt-get install %q lacks %q", install, strings.TrimSpace(want))
		}
	}

	// The binary lands where the DaemonSet runs it.
	ds := &appsv1.DaemonSet{}
	data, err := os.ReadFile("daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, ds); err != nil {
		t.Fatal(err)
	}
	bin := kproxyContainer(t, ds).Command[0]
	var entry string
	for _, in := range ins {
		if in.cmd == "COPY" && strings.Contains(in.args, "--from=") {
			f := strings.Fields(in.args)
			if dst := f[len(f)-1]; dst != bin {
				t.Errorf("line %d: the binary is copied to %s, the DaemonSet runs %s", in.line, dst, bin)
			}
		}
		if in.cmd == "ENTRYPOINT" {
			entry = in.args
		}
	}
	if entry != `["`+bin+`"]` {
		t.Errorf("ENTRYPOINT %s, want [%q]", entry, bin)
	}
}

// TestDockerfileBuildCommand checks the builder stage's go build against the
// repository: the package path must be a main package and the -X flag must hit the
// version variable (go build silently ignores an -X naming nothing, so the binary is
// linked with the Dockerfile's -ldflags and asked for its version). The build runs
// without CGO_ENABLED=0 and -trimpath, which only change how packages are compiled, so
// that it reuses the build cache of the other tests instead of recompiling everything.
func TestDockerfileBuildCommand(t *testing.T) {
	root := repoRoot(t)
	var build string
	for _, in := range parseDockerfile(t, "Dockerfile") {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			build = in.args
		}
	}
	if !strings.HasPrefix(build, "CGO_ENABLED=0 go build ") || !strings.Contains(build, " -trimpath ") {
		t.Fatalf("RUN %q: want a static, trimmed CGO_ENABLED=0 go build", build)
	}
	ldflags := ldflagsRE.FindStringSubmatch(build)
	if ldflags == nil {
		t.Fatalf("RUN %q has no quoted -ldflags", build)
	}
	fields := strings.Fields(build)
	pkg := fields[len(fields)-1]

	// The -X target is a package-level string variable in the repository.
	x := xFlagRE.FindStringSubmatch(ldflags[1])
	if x == nil {
		t.Fatalf("-ldflags %q sets no version with -X", ldflags[1])
	}
	const module = "github.com/kproxy/kproxy"
	rel, ok := strings.CutPrefix(x[1], module+"/")
	if !ok {
		t.Fatalf("-X %s is outside module %s", x[1], module)
	}
	if !declaresStringVar(t, filepath.Join(root, rel), x[2]) {
		t.Errorf("-X %s.%s: package %s declares no string variable %s", x[1], x[2], rel, x[2])
	}

	out := filepath.Join(t.TempDir(), "kproxy")
	flags := strings.ReplaceAll(ldflags[1], "${VERSION}", "v0.0.0-dockerfile-test")
	cmd := exec.Command("go", "build", "-ldflags", flags, "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, b)
	}
	v, err := exec.Command(out, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(v)); got != "kproxy v0.0.0-dockerfile-test" {
		t.Errorf("--version = %q: the -X flag does not set the version", got)
	}
}

func declaresStringVar(t *testing.T, dir, name string) bool {
	t.Helper()
	pkgs, err := parser.ParseDir(token.NewFileSet(), dir, func(fi os.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkgs {
		for _, f := range p.Files {
			for _, d := range f.Decls {
				g, ok := d.(*ast.GenDecl)
				if !ok || g.Tok != token.VAR {
					continue
				}
				for _, s := range g.Specs {
					vs := s.(*ast.ValueSpec)
					for i, n := range vs.Names {
						if n.Name != name {
							continue
						}
						if id, ok := vs.Type.(*ast.Ident); ok && id.Name == "string" {
							return true
						}
						if i < len(vs.Values) {
							if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
								return true
							}
						}
					}
				}
			}
		}
	}
	return false
}
