package reliability

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kproxy/kproxy/test/envtest"
)

// The binaries under test, built once by TestMain: two builds of cmd/kproxy that differ
// in the version linked in, as two releases rolled out one after the other would.
var (
	kproxyV1, kproxyV2 string
)

// Versions linked into the two builds.
const (
	versionV1 = "v0.0.1-reliability"
	versionV2 = "v0.0.2-reliability"
)

func TestMain(m *testing.M) {
	// envtest logs through controller-runtime; without a logger it prints a stack
	// trace after 30 s instead.
	ctrllog.SetLogger(logr.Discard())
	dir, err := os.MkdirTemp("", "kproxy-reliability-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kproxyV1, kproxyV2 = filepath.Join(dir, "kproxy-v1"), filepath.Join(dir, "kproxy-v2")
	for bin, version := range map[string]string{kproxyV1: versionV1, kproxyV2: versionV2} {
		if err := build(bin, version); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// build builds cmd/kproxy into bin with version linked in.
func build(bin, version string) error {
	root, err := envtest.RepoRoot()
	if err != nil {
		return fmt.Errorf("finding the repository: %w", err)
	}
	cmd := exec.Command("go", "build", "-o", bin,
		"-ldflags", "-X github.com/kproxy/kproxy/cmd/kproxy/app.version="+version, "./cmd/kproxy")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building kproxy %s: %w\n%s", version, err, strings.TrimSpace(string(out)))
	}
	return nil
}
