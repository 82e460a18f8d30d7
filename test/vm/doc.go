// Package vm runs Go tests inside a throwaway QEMU virtual machine that boots a Debian cloud
// kernel, so that code needing kernel features the test host lacks (IPVS above all, but also
// dummy links and a private netfilter state) is exercised against a real kernel.
//
// A host-side test calls [Run] with a package pattern. Run prepares the cached kernel and base
// initramfs with hack/vm-assets.sh, compiles the package's tests statically with the vmtest
// build tag, appends them to the initramfs together with a generated /init, boots the VM
// under TCG emulation and streams its serial console into the test log. The VM's test result
// decides the host test's result.
//
// Tests meant to run inside the VM carry the vmtest build tag and call [SkipUnlessInVM] first,
// so that `go test -tags vmtest` on the host skips them rather than touching the host kernel:
//
//	//go:build vmtest
//
//	func TestIPVSThing(t *testing.T) {
//		vm.SkipUnlessInVM(t)
//		...
//	}
//
// and, in an untagged file of any package:
//
//	func TestIPVSInVM(t *testing.T) {
//		vm.Run(t, vm.Options{Package: "./ipvs", Run: "TestIPVSThing"})
//	}
//
// The VM has no network card: tests build their topology from network namespaces, veth pairs
// and dummy links inside it. A run that needs a service of the host (a real kube-apiserver,
// say) lists it in [Options.HostForwards]: the VM then gets a virtio card on QEMU's restricted
// user-mode network, and each connection to the forwarded guest address is relayed to the
// host's loopback by a copy of the host test binary that QEMU starts for it (so every binary
// importing this package recognises a relay invocation in its init and does nothing else).
// The base initramfs carries busybox, the kernel's netfilter, IPVS, ipset, bridge, veth,
// dummy, sctp, xfrm and virtio-net modules, and the host's iptables (nft and legacy), ipset and
// conntrack binaries with their libraries.
package vm
