package readme

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// goBlock matches a fenced Go code block in Markdown.
var goBlock = regexp.MustCompile("(?s)```go\n(.*?)```")

// wrapper turns a README snippet into a compilable program: the snippet runs in a
// function that has what the prose assumes (a rest config, a context, a node name).
const wrapper = `package main

import (
	"context"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/kproxy/kproxy/controller"
	"github.com/kproxy/kproxy/iptables"
)

func snippet(ctx context.Context, cfg *rest.Config, node string) error {
%s
	_ = mgr
	return err
}

func main() { _ = snippet }
`

// TestREADMEGoSnippetsCompile builds each Go block of README.md inside the module.
func TestREADMEGoSnippetsCompile(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := goBlock.FindAllSubmatch(readme, -1)
	if len(blocks) == 0 {
		t.Fatal("README.md has no Go code block; this test would check nothing")
	}
	for i, b := range blocks {
		// Inside the module, so the snippet sees this checkout's packages.
		dir, err := os.MkdirTemp(".", ".snippet-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		src := strings.Replace(wrapper, "%s", indent(string(b[1])), 1)
		if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("go", "build", "-o", os.DevNull, "./"+dir).CombinedOutput()
		if err != nil {
			t.Errorf("README Go block %d does not compile: %v\n%s\n--- block ---\n%s", i+1, err, out, b[1])
		}
	}
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "\t" + l
	}
	return strings.Join(lines, "\n")
}
