// Package selftest holds the tests that prove the VM harness of package vm works: they run only
// inside the VM (build tag vmtest) and exercise a dummy kube-ipvs0 link, IPVS virtual servers,
// real TCP traffic through an IPVS ClusterIP into a network namespace, and the iptables, ipset
// and conntrack binaries the base initramfs carries. The host-side test that boots them is
// TestSelfTest in package vm.
package selftest
