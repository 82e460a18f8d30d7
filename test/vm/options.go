package vm

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Options describes one VM run: which tests to compile and run inside the VM and how big the
// VM is. Only Package is required.
type Options struct {
	// Package is the `go test` package pattern to compile, e.g. "./ipvs" or "./ipvs/...".
	// Relative patterns are resolved against the module root, not the caller's directory, so
	// every caller names packages the same way. Each matched package with tests becomes one
	// test binary; the VM runs them one after another.
	Package string

	// Run is the -test.run pattern passed to every test binary; empty runs all tests.
	Run string

	// Args are further flags for every test binary, e.g. "-test.count=3" or "-test.bench=.".
	Args []string

	// Timeout bounds the whole VM run, from boot to power-off; the VM is killed when it
	// expires. The tests inside get a slightly shorter -test.timeout so that a hang prints
	// goroutine stacks before the VM is killed. Zero means DefaultTimeout. The caller's own
	// test deadline shortens it further.
	Timeout time.Duration

	// MemoryMB is the VM's memory; the initramfs (about 30 MiB) lives in it. Zero means 1024.
	MemoryMB int

	// CPUs is the number of virtual CPUs. Zero means 1: under TCG emulation a second vCPU
	// rarely speeds a test up and slows the boot, but tests of concurrency may want it.
	CPUs int

	// Env holds extra environment variables for the test binaries. EnvInVM is always set.
	Env map[string]string

	// ExtraFiles maps host paths to absolute paths inside the VM, e.g. a kproxy binary to
	// "/usr/local/bin/kproxy". A host directory is copied recursively. Files keep their
	// permission bits.
	ExtraFiles map[string]string

	// Tags are build tags added to "vmtest" when compiling the tests.
	Tags []string

	// Modules are kernel modules to load in addition to DefaultModules before the tests run.
	// Modules the kernel requests itself (iptables matches, ipset types) load on demand.
	Modules []string

	// HostForwards let the tests reach TCP services listening on the host's loopback, such
	// as a real kube-apiserver: a connection to Guest inside the VM is relayed to Host on the
	// host. With any forward the VM gets a virtio network card on QEMU's user-mode network,
	// restricted so that the guest reaches nothing but the forwards; its address is GuestAddr
	// in GuestNetwork. Without forwards the VM has no network card at all.
	HostForwards []HostForward
}

// HostForward relays TCP connections from an address inside the VM to one on the host.
type HostForward struct {
	// Guest is the address the tests connect to: any address in GuestNetwork except
	// GuestAddr and QEMU's own gateway (.2), DNS (.3) and broadcast addresses.
	Guest netip.AddrPort
	// Host is where the connection goes on the host; it must be a loopback address, so the
	// VM can never reach further than the host's own test services.
	Host netip.AddrPort
}

// The VM's user-mode network when Options.HostForwards is set (QEMU's defaults).
var (
	// GuestNetwork is the VM's network, QEMU's default user-mode subnet.
	GuestNetwork = netip.MustParsePrefix("10.0.2.0/24")
	// GuestAddr is the VM's own address on eth0.
	GuestAddr = netip.MustParseAddr("10.0.2.15")
)

// guestNetworkModules are loaded (after DefaultModules) when the VM has a network card.
var guestNetworkModules = []string{"virtio_pci", "virtio_net"}

// DefaultTimeout bounds a VM run when Options.Timeout is zero. Booting takes a few seconds;
// the rest is room for slow emulated tests.
const DefaultTimeout = 3 * time.Minute

// DefaultModules lists the modules /init loads before the tests run: IPVS with every scheduler
// kube-proxy accepts, conntrack and NAT, the link types the tests create, the ipset types
// kube-proxy's IPVS mode uses, and xfrm_user, whose netlink family test/netns (through
// vishvananda/netlink) opens a socket for. It returns a fresh slice the caller may modify.
func DefaultModules() []string {
	return []string{
		"ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_lc", "ip_vs_wlc", "ip_vs_lblc", "ip_vs_lblcr",
		"ip_vs_sh", "ip_vs_dh", "ip_vs_sed", "ip_vs_nq", "ip_vs_mh",
		"nf_conntrack", "nf_nat", "dummy", "veth", "bridge", "br_netfilter",
		"ip_set", "ip_set_hash_ip", "ip_set_hash_ipport", "ip_set_hash_ipportip",
		"ip_set_hash_ipportnet", "ip_set_hash_net", "ip_set_bitmap_port",
		"xfrm_user",
	}
}

var (
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	moduleRE  = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

// withDefaults validates o and fills in its zero values.
func (o Options) withDefaults() (Options, error) {
	if strings.TrimSpace(o.Package) == "" {
		return o, fmt.Errorf("vm.Options.Package is required")
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MemoryMB <= 0 {
		o.MemoryMB = 1024
	}
	if o.CPUs <= 0 {
		o.CPUs = 1
	}
	for k := range o.Env {
		if !envNameRE.MatchString(k) {
			return o, fmt.Errorf("vm.Options.Env: invalid variable name %q", k)
		}
	}
	for _, m := range o.Modules {
		if !moduleRE.MatchString(m) {
			return o, fmt.Errorf("vm.Options.Modules: invalid module name %q", m)
		}
	}
	for host, guest := range o.ExtraFiles {
		if !strings.HasPrefix(guest, "/") {
			return o, fmt.Errorf("vm.Options.ExtraFiles: VM path %q for %s must be absolute", guest, host)
		}
	}
	seen := map[netip.AddrPort]bool{}
	for _, f := range o.HostForwards {
		if err := f.validate(); err != nil {
			return o, fmt.Errorf("vm.Options.HostForwards: %w", err)
		}
		if seen[f.Guest] {
			return o, fmt.Errorf("vm.Options.HostForwards: guest address %s forwarded twice", f.Guest)
		}
		seen[f.Guest] = true
	}
	return o, nil
}

// validate checks one forward against the user-mode network's layout.
func (f HostForward) validate() error {
	g := f.Guest.Addr()
	reserved := []netip.Addr{GuestAddr, netip.MustParseAddr("10.0.2.2"), netip.MustParseAddr("10.0.2.3"),
		GuestNetwork.Masked().Addr(), netip.MustParseAddr("10.0.2.255")}
	switch {
	case !f.Guest.IsValid() || f.Guest.Port() == 0 || !GuestNetwork.Contains(g):
		return fmt.Errorf("guest address %s must be an address:port in %s", f.Guest, GuestNetwork)
	case slices.Contains(reserved, g):
		return fmt.Errorf("guest address %s is reserved in QEMU's user-mode network", g)
	case !f.Host.IsValid() || f.Host.Port() == 0 || !f.Host.Addr().Is4() || !f.Host.Addr().IsLoopback():
		return fmt.Errorf("host address %s must be an IPv4 loopback address:port", f.Host)
	}
	return nil
}

// innerTimeout is the -test.timeout for the binaries inside the VM: the run's budget minus
// room for booting and powering off, so that Go's own timeout report wins the race.
func innerTimeout(total time.Duration) time.Duration {
	const reserve = 20 * time.Second
	if total > 2*reserve {
		return total - reserve
	}
	return total * 3 / 4
}
