package main

import (
	"context"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kproxy/kproxy/test/envtest"
	"github.com/kproxy/kproxy/test/netns"
	"github.com/kproxy/kproxy/test/vm"
)

// Where TestVMIPVSMode puts things inside the VM.
const (
	vmKproxyBin  = "/usr/local/bin/kproxy"
	vmKubeconfig = "/etc/kproxy/kubeconfig"
	// envVMAPIServer names the guest address:port that reaches the host's apiserver.
	envVMAPIServer = "KPROXY_VM_APISERVER"
)

// vmAPIServer is the address inside the VM that QEMU forwards to the apiserver.
var vmAPIServer = netip.MustParseAddrPort("10.0.2.100:6443")

// TestVMIPVSMode runs the kproxy binary in ipvs mode against a real API server, with a
// real IPVS kernel: the envtest apiserver runs on the host, a VM (test/vm) boots with a
// static kproxy and the apiserver forwarded into it, and vm_test.go's TestVMInside* build
// a node in network namespaces there, run kproxy in it and send real connections to a
// ClusterIP and a NodePort; on the way they switch the node from iptables mode to ipvs
// mode and back, and clean it up.
func TestVMIPVSMode(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	if vm.InVM() {
		t.Skip("already inside the VM")
	}
	netns.RequireRoot(t)
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not found; install the Debian package qemu-system-x86")
	}
	env := envtest.Start(t, envtest.Options{})
	u, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	host, err := netip.ParseAddrPort(u.Host)
	if err != nil {
		t.Fatalf("apiserver address %q: %v", u.Host, err)
	}
	vm.Run(t, vm.Options{
		Package:  "./cmd/kproxy",
		Run:      "^TestVMInside",
		Timeout:  5 * time.Minute,
		MemoryMB: 2048,
		ExtraFiles: map[string]string{
			staticKproxy(t): vmKproxyBin,
			env.Kubeconfig:  vmKubeconfig,
		},
		Env:          map[string]string{envVMAPIServer: vmAPIServer.String()},
		HostForwards: []vm.HostForward{{Guest: vmAPIServer, Host: host}},
	})
}

// staticKproxy builds kproxy without cgo: the VM has no C library for it. The build
// settings are test/vm's for the test binaries (no cgo, the vmtest tag, which no
// non-test file of kproxy uses), so both builds share compiled packages.
func staticKproxy(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kproxy")
	build := exec.Command("go", "build", "-tags", "vmtest", "-ldflags=-s -w", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building a static kproxy: %v\n%s", err, out)
	}
	return bin
}

// TestIPVSModeWithoutIPVS runs the binary on a kernel without IPVS (the CI host), in a
// fresh namespace: --proxy-mode=ipvs fails with advice, and --cleanup, which cleans
// both modes, succeeds.
func TestIPVSModeWithoutIPVS(t *testing.T) {
	for _, p := range []string{"/sys/module/ip_vs", "/proc/net/ip_vs"} {
		if _, err := os.Stat(p); err == nil {
			t.Skip("this kernel has IPVS; TestVMIPVSMode covers ipvs mode")
		}
	}
	ns := netns.NewNS(t, "no-ipvs")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := ns.Exec(ctx, kproxyBin, "--proxy-mode=ipvs", "--hostname-override=n", "--master=http://127.0.0.1:1")
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	if err == nil || !strings.HasPrefix(last, "kproxy: IPVS is not available in this kernel: ") || !strings.HasSuffix(last, "; use --proxy-mode=iptables") {
		t.Errorf("--proxy-mode=ipvs without IPVS: %v, last line %q", err, last)
	}
	if out, err := ns.Exec(ctx, kproxyBin, "--cleanup"); err != nil {
		t.Errorf("--cleanup without IPVS: %v\n%s", err, out)
	}
}
