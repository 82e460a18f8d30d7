package iptables

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// requireRoot skips tests that touch the kernel when not root.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace and programs iptables in it")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2) to create network namespaces")
	}
}

// requireBackend skips when the binaries of a backend are not installed.
func requireBackend(t testing.TB, b Backend, families ...Family) {
	t.Helper()
	if len(families) == 0 {
		families = []Family{IPv4}
	}
	for _, f := range families {
		for _, suffix := range []string{"", "-save", "-restore"} {
			if _, err := exec.LookPath(binaryName(b, f, suffix)); err != nil {
				t.Skipf("iptables %s backend not installed: %v", b, err)
			}
		}
	}
}

// newTestNetns creates a fresh network namespace named kpt-<random> and
// deletes it when the test ends. All kernel tests run inside one, never
// against the host's rules.
func newTestNetns(t testing.TB) string {
	t.Helper()
	requireRoot(t)
	buf := make([]byte, 5)
	if _, err := rand.Read(buf); err != nil {
		t.Fatal(err)
	}
	name := "kpt-" + hex.EncodeToString(buf)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return name
}

// inNetns runs a command inside the namespace (for setting up state
// independently of the code under test).
func inNetns(t testing.TB, netns string, stdin string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", netns, name}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v in %s: %v: %s", name, args, netns, err, out)
	}
	return string(out)
}

// newTestExec returns an ExecKernel for backend b in netns.
func newTestExec(t testing.TB, b Backend, netns string, wait int) *ExecKernel {
	t.Helper()
	k, err := NewExecKernel(context.Background(), ExecOptions{Backend: b, Netns: netns, WaitSeconds: wait})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var (
	counterRE = regexp.MustCompile(`\[[0-9]+:[0-9]+\]`)
)

// normalizeSave drops comment lines and zeroes counters so saves from the
// kernel and from the Fake compare byte for byte.
func normalizeSave(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		b.WriteString(counterRE.ReplaceAllString(line, "[0:0]"))
		b.WriteByte('\n')
	}
	return b.String()
}
