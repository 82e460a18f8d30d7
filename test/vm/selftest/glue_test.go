//go:build vmtest

package selftest

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/kproxy/kproxy/test/vm"
)

// TestGlueBinaries proves the iptables (nft and legacy), ipset and conntrack binaries copied
// from the host run in the VM, including the dlopen'ed match extensions kube-proxy's IPVS
// mode relies on.
func TestGlueBinaries(t *testing.T) {
	vm.SkipUnlessInVM(t)

	run(t, "ipset", "create", "KUBE-CLUSTER-IP", "hash:ip,port")
	t.Cleanup(func() { _ = runQuiet("ipset", "destroy", "KUBE-CLUSTER-IP") })
	run(t, "ipset", "add", "KUBE-CLUSTER-IP", "10.96.0.10,tcp:80")
	if out := run(t, "ipset", "list"); !strings.Contains(out, "10.96.0.10,tcp:80") {
		t.Errorf("ipset list misses the member just added")
	}

	run(t, "iptables-nft", "-t", "nat", "-N", "KUBE-SERVICES")
	t.Cleanup(func() {
		_ = runQuiet("iptables-nft", "-t", "nat", "-F")
		_ = runQuiet("iptables-nft", "-t", "nat", "-X")
	})
	run(t, "iptables-nft", "-t", "nat", "-A", "OUTPUT", "-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES")
	run(t, "iptables-nft", "-t", "nat", "-A", "KUBE-SERVICES", "-m", "set", "--match-set", "KUBE-CLUSTER-IP", "dst,dst", "-j", "ACCEPT")
	out := run(t, "iptables-nft", "-t", "nat", "-S")
	for _, want := range []string{"-N KUBE-SERVICES", "--match-set KUBE-CLUSTER-IP dst,dst", `--comment "kubernetes service portals"`} {
		if !strings.Contains(out, want) {
			t.Errorf("iptables-nft -t nat -S misses %q", want)
		}
	}

	run(t, "iptables-legacy", "-N", "KUBE-FIREWALL")
	t.Cleanup(func() {
		_ = runQuiet("iptables-legacy", "-F")
		_ = runQuiet("iptables-legacy", "-X")
	})
	run(t, "iptables-legacy", "-A", "KUBE-FIREWALL", "-m", "addrtype", "--dst-type", "LOCAL", "-m", "mark", "--mark", "0x8000/0x8000", "-j", "DROP")
	run(t, "iptables-legacy", "-A", "INPUT", "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP")
	out = run(t, "iptables-legacy", "-S")
	for _, want := range []string{"-N KUBE-FIREWALL", "--dst-type LOCAL", "--ctstate INVALID"} {
		if !strings.Contains(out, want) {
			t.Errorf("iptables-legacy -S misses %q", want)
		}
	}

	run(t, "conntrack", "-L")
}

// runQuiet runs a cleanup command whose failure does not matter.
func runQuiet(name string, args ...string) error {
	return exec.Command(name, args...).Run()
}
