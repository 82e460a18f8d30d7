package ipvs

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/kproxy/kproxy/proxier"
)

// DeviceName is the dummy interface every service address is bound to, so that the
// kernel delivers packets for it locally where IPVS picks them up. The name is
// kube-proxy's, so that a node switched between the two keeps working.
const DeviceName = "kube-ipvs0"

// DefaultScheduler is the IPVS scheduler used when PlanOptions.Scheduler is empty,
// kube-proxy's default (round robin).
const DefaultScheduler = "rr"

// Schedulers lists the IPVS schedulers kube-proxy documents and kproxy accepts. Each is
// a kernel module (ip_vs_<name>) the kernel loads on first use.
var Schedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "sh", "dh", "sed", "nq", "mh"}

// Flags are IPVS virtual server flags as the kernel stores them.
type Flags uint32

// Virtual server flags kproxy sets or has to recognise.
const (
	// FlagPersistent turns on persistence: a client keeps its real server for Timeout
	// seconds after its last connection. ClientIP session affinity maps to it.
	FlagPersistent Flags = 0x0001
	// FlagHashed is set by the kernel on every virtual server in its hash table. It is
	// stripped when reading, so that read-back values compare equal to desired ones.
	FlagHashed Flags = 0x0002
	// FlagSourceHash (IP_VS_SVC_F_SCHED2) makes the mh scheduler hash the source port
	// as well as the source address, as kube-proxy configures it.
	FlagSourceHash Flags = 0x0010
)

// VSKey identifies a virtual server: an address, a protocol and a port. It is what the
// kernel looks virtual servers up by.
type VSKey struct {
	Addr     netip.Addr
	Protocol proxier.Protocol
	Port     uint16
}

// String returns "addr:port/proto", e.g. "10.96.0.1:443/tcp" or "[fd00::1]:53/udp".
func (k VSKey) String() string {
	return netip.AddrPortFrom(k.Addr, k.Port).String() + "/" + k.Protocol.String()
}

// Family returns the key's address family.
func (k VSKey) Family() proxier.IPFamily { return proxier.FamilyOf(k.Addr) }

// Compare orders keys by address, protocol, then port, so plans are deterministic.
func (k VSKey) Compare(o VSKey) int {
	if c := k.Addr.Compare(o.Addr); c != 0 {
		return c
	}
	if c := cmp.Compare(k.Protocol, o.Protocol); c != 0 {
		return c
	}
	return cmp.Compare(k.Port, o.Port)
}

// VirtualServer is one IPVS virtual server with its real servers.
//
// A VirtualServer that is part of a Snapshot is never modified once the snapshot is
// published; code that needs a changed one clones it first. That lets the proxier's
// caches share values with the desired state instead of copying 100,000 real servers.
type VirtualServer struct {
	VSKey
	// Scheduler is the IPVS scheduler name ("rr", "wlc", ...).
	Scheduler string
	// Flags are the virtual server flags, without FlagHashed.
	Flags Flags
	// Timeout is the persistence timeout in seconds; meaningful with FlagPersistent.
	Timeout uint32
	// Netmask is the persistence granularity: 0xffffffff for IPv4 (one client address)
	// or 128 (a prefix length) for IPv6, as kube-proxy sets it.
	Netmask uint32
	// Reals are the real servers, sorted by address and port. The Kernel ignores them
	// when adding or updating a virtual server.
	Reals []RealServer
}

// String returns the key followed by the scheduler and persistence settings.
func (vs *VirtualServer) String() string {
	s := vs.VSKey.String() + " " + vs.Scheduler
	if vs.Flags&FlagPersistent != 0 {
		s += " persistent " + strconv.FormatUint(uint64(vs.Timeout), 10)
	}
	return s
}

// SameAttrs reports whether two virtual servers have the same key and settings,
// ignoring their real servers: a difference here needs an update of the virtual server
// itself.
func (vs *VirtualServer) SameAttrs(o *VirtualServer) bool {
	return vs.VSKey == o.VSKey && vs.Scheduler == o.Scheduler && vs.Flags == o.Flags &&
		vs.Timeout == o.Timeout && vs.Netmask == o.Netmask
}

// Real returns the real server with the given address, if present.
func (vs *VirtualServer) Real(addr netip.AddrPort) (RealServer, bool) {
	i, ok := slices.BinarySearchFunc(vs.Reals, addr, func(r RealServer, a netip.AddrPort) int { return r.Addr.Compare(a) })
	if !ok {
		return RealServer{}, false
	}
	return vs.Reals[i], true
}

// Clone returns a copy that can be modified without touching vs.
func (vs *VirtualServer) Clone() *VirtualServer {
	c := *vs
	c.Reals = slices.Clone(vs.Reals)
	return &c
}

// withoutReals returns a copy of the virtual server's attributes without real servers.
func (vs *VirtualServer) withoutReals() *VirtualServer {
	c := *vs
	c.Reals = nil
	return &c
}

// RealServer is one IPVS destination of a virtual server. kproxy always uses NAT
// (masquerading) forwarding, the only method that works for pods.
type RealServer struct {
	Addr netip.AddrPort
	// Weight is 1 for an active endpoint and 0 for one that is draining: IPVS sends it
	// no new connections while its established ones carry on.
	Weight int
	// ActiveConns and InactiveConns are the kernel's connection counters, filled when
	// reading from the kernel. Negative values mean unknown: a real server the proxier
	// programmed itself and has not read back since.
	ActiveConns   int
	InactiveConns int
}

// String returns "addr:port" and the weight.
func (rs RealServer) String() string {
	return fmt.Sprintf("%s w%d", rs.Addr, rs.Weight)
}

// idle reports whether the kernel counted no connection at all through the real server.
func (rs RealServer) idle() bool { return rs.ActiveConns == 0 && rs.InactiveConns == 0 }

// sortReals sorts real servers by address and port.
func sortReals(rs []RealServer) {
	slices.SortFunc(rs, func(a, b RealServer) int { return a.Addr.Compare(b.Addr) })
}

// gracefulTermination reports whether real servers of proto are drained (weight 0 until
// their connections end) rather than deleted at once. UDP and SCTP are not: with
// expire_nodest_conn=1 their flows move on at the next packet, as in kube-proxy.
func gracefulTermination(proto proxier.Protocol) bool { return proto == proxier.ProtocolTCP }

// netmaskFor returns the persistence netmask kube-proxy uses for a family.
func netmaskFor(f proxier.IPFamily) uint32 {
	if f == proxier.IPv6 {
		return 128
	}
	return 0xffffffff
}

// validScheduler reports whether name is one of Schedulers.
func validScheduler(name string) bool { return slices.Contains(Schedulers, name) }

// Snapshot is one complete view of what the IPVS proxier of one family owns in the
// kernel, or wants there: virtual servers with their real servers, the addresses bound
// to kube-ipvs0, the ipsets the glue matches, and the glue itself. Desired builds the
// wanted one from a proxier.State; ReadSnapshot reads the actual one; Plan diffs them.
//
// A Snapshot may also cover only part of the keys (the proxier plans a partial sync
// from two such partial views); Plan treats whatever is absent from both as unchanged.
type Snapshot struct {
	Family proxier.IPFamily
	// Device reports whether kube-ipvs0 exists.
	Device bool
	// Servers are the virtual servers by key.
	Servers map[VSKey]*VirtualServer
	// Addresses are the addresses of Family bound to kube-ipvs0.
	Addresses map[netip.Addr]struct{}
	// Sets are the ipsets by name. A set absent from an observed snapshot does not
	// exist in the kernel.
	Sets map[string]*SetState
	// Glue is the iptables-restore payload of the glue; nil in a snapshot read from
	// the kernel, which means unknown (and makes Plan restore it and ensure the jumps
	// into it).
	Glue []byte
}

// SetState is one ipset and its members.
type SetState struct {
	Spec    SetSpec
	Entries map[SetEntry]struct{}
}

// NewSnapshot returns an empty snapshot of a family.
func NewSnapshot(f proxier.IPFamily) *Snapshot {
	return &Snapshot{
		Family:    f,
		Servers:   map[VSKey]*VirtualServer{},
		Addresses: map[netip.Addr]struct{}{},
		Sets:      map[string]*SetState{},
	}
}

// Equal reports whether two snapshots describe the same kernel state (connection
// counters are ignored).
func (s *Snapshot) Equal(o *Snapshot) bool {
	if s.Family != o.Family || s.Device != o.Device || len(s.Servers) != len(o.Servers) ||
		len(s.Addresses) != len(o.Addresses) || len(s.Sets) != len(o.Sets) {
		return false
	}
	for k, vs := range s.Servers {
		ovs, ok := o.Servers[k]
		if !ok || !vs.SameAttrs(ovs) || len(vs.Reals) != len(ovs.Reals) {
			return false
		}
		for i, r := range vs.Reals {
			if r.Addr != ovs.Reals[i].Addr || r.Weight != ovs.Reals[i].Weight {
				return false
			}
		}
	}
	for a := range s.Addresses {
		if _, ok := o.Addresses[a]; !ok {
			return false
		}
	}
	for n, set := range s.Sets {
		oset, ok := o.Sets[n]
		if !ok || set.Spec.Type != oset.Spec.Type || len(set.Entries) != len(oset.Entries) {
			return false
		}
		for e := range set.Entries {
			if _, ok := oset.Entries[e]; !ok {
				return false
			}
		}
	}
	return true
}
