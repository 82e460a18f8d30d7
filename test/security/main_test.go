package security

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/kproxy/kproxy/test/envtest"
	"github.com/kproxy/kproxy/test/netns"
)

// kproxyBin is the kproxy binary TestMain built from this checkout.
var kproxyBin string

// TestMain builds cmd/kproxy once for every test and stops the shared control plane.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "kproxy-security-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	root, err := envtest.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "finding the module root:", err)
		return 1
	}
	kproxyBin = filepath.Join(dir, "kproxy")
	build := exec.Command("go", "build", "-o", kproxyBin, "./cmd/kproxy")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build ./cmd/kproxy: %v\n%s", err, out)
		return 1
	}
	defer stopEnv()
	return m.Run()
}

var (
	envOnce sync.Once
	env     *envtest.Env
	envErr  error
)

// sharedEnv returns the control plane all tests share, starting it on first use:
// starting one per test would cost more than the tests themselves.
func sharedEnv(t *testing.T) *envtest.Env {
	t.Helper()
	netns.RequireRoot(t)
	envOnce.Do(func() { env, envErr = envtest.New(envtest.Options{}) })
	if envErr != nil {
		t.Fatal(envErr)
	}
	return env
}

func stopEnv() {
	if env != nil {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}
}
