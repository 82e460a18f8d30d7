package ipvs

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/kproxy/kproxy/proxier"
)

// Kernel is everything IPVS mode needs from the machine: the IPVS table, the kube-ipvs0
// dummy device and its addresses, ipsets, and a few sysctls. Operations are
// fine-grained, one kernel round trip each, because IPVS has no transaction to batch
// them into; Apply runs a plan's operations in order. The iptables glue goes through
// an iptables.Kernel instead.
//
// Implementations are goroutine-safe and return *KernelError values classified by
// errno (errors.Is with ErrNotFound, ErrExist, ErrInvalid, ErrBusy, or the errno).
// Netlink is the real implementation and Fake the in-memory one.
type Kernel interface {
	// VirtualServers lists the virtual servers of one family, without real servers.
	VirtualServers(ctx context.Context, family proxier.IPFamily) ([]*VirtualServer, error)
	// RealServers lists the real servers of a virtual server with their connection
	// counters, sorted by address.
	RealServers(ctx context.Context, vs VSKey) ([]RealServer, error)
	// AddVirtualServer creates a virtual server (its Reals are ignored).
	AddVirtualServer(ctx context.Context, vs *VirtualServer) error
	// UpdateVirtualServer changes the scheduler, flags, timeout and netmask of an
	// existing virtual server without touching its real servers or connections.
	UpdateVirtualServer(ctx context.Context, vs *VirtualServer) error
	// DeleteVirtualServer deletes a virtual server and its real servers.
	DeleteVirtualServer(ctx context.Context, vs VSKey) error
	// AddRealServer adds a NAT-forwarded real server to a virtual server.
	AddRealServer(ctx context.Context, vs VSKey, rs RealServer) error
	// UpdateRealServer changes the weight of a real server.
	UpdateRealServer(ctx context.Context, vs VSKey, rs RealServer) error
	// DeleteRealServer removes a real server; connections through it break.
	DeleteRealServer(ctx context.Context, vs VSKey, rs netip.AddrPort) error
	// SetTimeouts sets the global IPVS connection timeouts (ipvsadm --set); a zero
	// field leaves that timeout unchanged.
	SetTimeouts(ctx context.Context, t Timeouts) error

	// EnsureDevice creates the kube-ipvs0 dummy device unless it exists, and reports
	// whether it did.
	EnsureDevice(ctx context.Context) (created bool, err error)
	// DeleteDevice deletes kube-ipvs0 and every address on it; a missing device is
	// not an error.
	DeleteDevice(ctx context.Context) error
	// DeviceAddresses lists the addresses of one family bound to kube-ipvs0, and
	// whether the device exists at all.
	DeviceAddresses(ctx context.Context, family proxier.IPFamily) (addrs []netip.Addr, exists bool, err error)
	// AddAddress binds a host address (/32 or /128) to kube-ipvs0.
	AddAddress(ctx context.Context, addr netip.Addr) error
	// DeleteAddress unbinds an address from kube-ipvs0.
	DeleteAddress(ctx context.Context, addr netip.Addr) error
	// HostAddresses lists the node's own addresses of one family: every address on
	// every interface except kube-ipvs0, without loopback and IPv6 link-local ones.
	// They are where node ports listen, and service IPs equal to one of them are not
	// bound to kube-ipvs0.
	HostAddresses(ctx context.Context, family proxier.IPFamily) ([]netip.Addr, error)

	// ListSet returns an ipset's type, family and members (ErrNotFound if missing).
	ListSet(ctx context.Context, name string) (*SetContent, error)
	// CreateSet creates an ipset with kube-proxy's parameters (hashsize 1024,
	// maxelem 65536, port range 0-65535 for bitmap:port).
	CreateSet(ctx context.Context, spec SetSpec) error
	// DestroySet destroys an ipset; ErrBusy while an iptables rule references it. A
	// missing set is not an error.
	DestroySet(ctx context.Context, name string) error
	// AddEntry adds a member to a set.
	AddEntry(ctx context.Context, set string, e SetEntry) error
	// DeleteEntry removes a member from a set.
	DeleteEntry(ctx context.Context, set string, e SetEntry) error

	// Sysctl reads a network sysctl, named by its path below /proc/sys
	// ("net/ipv4/vs/conntrack"), in the kernel's network namespace.
	Sysctl(ctx context.Context, name string) (string, error)
	// SetSysctl writes a network sysctl.
	SetSysctl(ctx context.Context, name, value string) error
	// KernelVersion returns the running kernel's major and minor version, for the
	// sysctls whose meaning changed over time.
	KernelVersion(ctx context.Context) (major, minor int, err error)
}

// Timeouts are IPVS's global connection timeouts.
type Timeouts struct {
	TCP, TCPFin, UDP time.Duration
}

// SetContent is what ListSet returns.
type SetContent struct {
	Type    SetType
	Family  proxier.IPFamily
	Entries []SetEntry
}

// Operation names, used in KernelError.Op, as the op label of
// kproxy_netlink_operations_total and by the Fake's counters and fault injection.
const (
	OpListServices      = "list_services"
	OpListDestinations  = "list_destinations"
	OpAddService        = "add_service"
	OpUpdateService     = "update_service"
	OpDeleteService     = "delete_service"
	OpAddDestination    = "add_destination"
	OpUpdateDestination = "update_destination"
	OpDeleteDestination = "delete_destination"
	OpSetTimeouts       = "set_timeouts"
	OpEnsureDevice      = "ensure_device"
	OpDeleteDevice      = "delete_device"
	OpListAddresses     = "list_addresses"
	OpAddAddress        = "add_address"
	OpDeleteAddress     = "delete_address"
	OpListHostAddresses = "list_host_addresses"
	OpListSet           = "ipset_list"
	OpCreateSet         = "ipset_create"
	OpDestroySet        = "ipset_destroy"
	OpAddEntry          = "ipset_add"
	OpDeleteEntry       = "ipset_del"
	OpGetSysctl         = "sysctl_get"
	OpSetSysctl         = "sysctl_set"
	OpKernelVersion     = "kernel_version"
)

// readOps are the operations that change nothing.
var readOps = map[string]bool{
	OpListServices: true, OpListDestinations: true, OpListAddresses: true,
	OpListHostAddresses: true, OpListSet: true, OpGetSysctl: true, OpKernelVersion: true,
}

// IsWrite reports whether the named operation changes kernel state. Tests use it to
// assert that a sync of an unchanged state writes nothing.
func IsWrite(op string) bool { return !readOps[op] }

// ReadSnapshot reads the kernel's state for one family: kube-ipvs0 and its addresses,
// the family's ipsets, and virtual servers with their real servers. keep selects the
// virtual servers to include (and list real servers for); it is called with the
// snapshot whose device, addresses and sets are already read, so ownership can be
// decided from them. A nil keep includes every virtual server of the family. The
// returned Glue is nil: the glue is not read back.
func ReadSnapshot(ctx context.Context, k Kernel, family proxier.IPFamily, keep func(vs *VirtualServer, s *Snapshot) bool) (*Snapshot, error) {
	s := NewSnapshot(family)
	addrs, exists, err := k.DeviceAddresses(ctx, family)
	if err != nil {
		return nil, err
	}
	s.Device = exists
	for _, a := range addrs {
		s.Addresses[a] = struct{}{}
	}
	for _, spec := range Sets(family) {
		content, err := k.ListSet(ctx, spec.Name)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		set := &SetState{Spec: spec, Entries: make(map[SetEntry]struct{}, len(content.Entries))}
		set.Spec.Type = content.Type
		for _, e := range content.Entries {
			set.Entries[e] = struct{}{}
		}
		s.Sets[spec.Name] = set
	}
	servers, err := k.VirtualServers(ctx, family)
	if err != nil {
		return nil, err
	}
	for _, vs := range servers {
		if keep != nil && !keep(vs, s) {
			continue
		}
		reals, err := k.RealServers(ctx, vs.VSKey)
		if errors.Is(err, ErrNotFound) {
			continue // deleted while we were reading
		}
		if err != nil {
			return nil, err
		}
		vs.Reals = reals
		s.Servers[vs.VSKey] = vs
	}
	return s, nil
}
