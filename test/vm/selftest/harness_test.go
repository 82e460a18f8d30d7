//go:build vmtest

package selftest

import (
	"os"
	"testing"
	"time"

	"github.com/kproxy/kproxy/test/vm"
)

// TestAlwaysFailsInVM fails on purpose when the host's TestFailureIsReported asks for it, to
// prove that a failure inside the VM reaches the host. It skips in every other run.
func TestAlwaysFailsInVM(t *testing.T) {
	vm.SkipUnlessInVM(t)
	if os.Getenv("KPROXY_SELFTEST_FAIL") != "1" {
		t.Skip("only fails when vm_test.go's TestFailureIsReported runs it")
	}
	t.Error("failing on purpose")
}

// TestEnvReachesVM checks that vm.Options.Env arrives intact, quotes included.
func TestEnvReachesVM(t *testing.T) {
	vm.SkipUnlessInVM(t)
	got, ok := os.LookupEnv("KPROXY_SELFTEST")
	if !ok {
		t.Skip("KPROXY_SELFTEST not set by this run")
	}
	if want := "it's quoted"; got != want {
		t.Errorf("KPROXY_SELFTEST = %q, want %q", got, want)
	}
}

// TestHangsInVM hangs on purpose when the host's TestTimeoutKillsVM asks for it, to prove that
// a hung VM is killed at its timeout. It skips in every other run.
func TestHangsInVM(t *testing.T) {
	vm.SkipUnlessInVM(t)
	if os.Getenv("KPROXY_SELFTEST_HANG") != "1" {
		t.Skip("only hangs when vm_test.go's TestTimeoutKillsVM runs it")
	}
	time.Sleep(time.Hour)
}
