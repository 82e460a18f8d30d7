package ipvs

import (
	"testing"
	"time"

	"github.com/kproxy/kproxy/test/vm"
)

// TestVM boots a VM with a real IPVS kernel and runs this package's vmtest-tagged
// TestVM* tests inside it (vm_test.go): the Kernel conformance suite against Netlink,
// and the proxier carrying real connections through network namespaces. It skips when
// the host cannot run the VM (not root, no QEMU) and in -short mode.
func TestVM(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	vm.Run(t, vm.Options{
		Package:  "./ipvs",
		Run:      "^TestVM.",
		Timeout:  15 * time.Minute,
		MemoryMB: 2048,
		// Two vCPUs, as every real node has at least: Apply binds addresses on one
		// while it adds real servers on the other (TestVMColdProgramming).
		CPUs: 2,
		Args: []string{"-test.v"},
	})
}
