package vm

import (
	"os"
	"testing"
)

// EnvInVM is set to "1" by the VM's /init for every test binary it runs. It is how code tells
// a disposable kernel, which it may reconfigure freely, from the developer's or CI's host.
const EnvInVM = "KPROXY_IN_VM"

// InVM reports whether the process runs inside a VM booted by [Run].
func InVM() bool { return os.Getenv(EnvInVM) == "1" }

// SkipUnlessInVM skips t unless it runs inside a VM booted by [Run]. VM-only tests change
// global kernel state (IPVS tables, links in the root namespace), which must never happen on
// the host even when someone builds them with the vmtest tag.
func SkipUnlessInVM(t testing.TB) {
	t.Helper()
	if !InVM() {
		t.Skipf("runs only inside the test VM (%s=1); run it from the host through vm.Run", EnvInVM)
	}
}
