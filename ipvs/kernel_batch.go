package ipvs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/kproxy/kproxy/proxier"
)

var _ Batcher = &Netlink{}

// IPVS's generic netlink protocol (linux/ip_vs.h). moby/ipvs keeps its constants
// unexported, and it sends one request per call, which is what batching avoids.
const (
	ipvsGenlVersion = 1

	ipvsCmdNewService = 1
	ipvsCmdSetService = 2
	ipvsCmdDelService = 3
	ipvsCmdNewDest    = 5
	ipvsCmdSetDest    = 6
	ipvsCmdDelDest    = 7

	ipvsCmdAttrService = 1
	ipvsCmdAttrDest    = 2

	ipvsSvcAttrAF        = 1
	ipvsSvcAttrProtocol  = 2
	ipvsSvcAttrAddr      = 3
	ipvsSvcAttrPort      = 4
	ipvsSvcAttrSchedName = 6
	ipvsSvcAttrFlags     = 7
	ipvsSvcAttrTimeout   = 8
	ipvsSvcAttrNetmask   = 9

	ipvsDestAttrAddr       = 1
	ipvsDestAttrPort       = 2
	ipvsDestAttrFwdMethod  = 3
	ipvsDestAttrWeight     = 4
	ipvsDestAttrUThresh    = 5
	ipvsDestAttrLThresh    = 6
	ipvsDestAttrAddrFamily = 11

	ipvsFwdMasq = 0 // IP_VS_CONN_F_MASQ: NAT, the only forwarding kproxy uses
)

// maxBatchBytes bounds one sendmsg: the kernel refuses a send bigger than the socket's
// send buffer, whose default (without the CAP_NET_ADMIN to raise it) is about 200 KiB.
// A MaxBatch of the biggest operations (IPv6 real servers, ~150 bytes) fits in one.
const maxBatchBytes = 64 << 10

// Batch implements Batcher: every operation of ops becomes one netlink message, and
// the messages go to the kernel in as few sendmsg calls as fit maxBatchBytes. Batches
// on different sockets (IPVS, addresses, set members) run concurrently; Apply binds
// addresses while it still adds real servers.
func (n *Netlink) Batch(_ context.Context, ops []Op) []error {
	if len(ops) == 0 {
		return nil
	}
	return n.batch(ops)
}

// batch sends ops on the socket of their action, holding only that socket's lock
// (and n.mu for the device lookup of addresses).
func (n *Netlink) batch(ops []Op) []error {
	action := ops[0].Action
	var conn *nlConn
	var encode func(*nlBuf, Op) error
	switch action {
	case AddVirtualServer, UpdateVirtualServer, DeleteVirtualServer,
		AddRealServer, UpdateRealServer, DrainRealServer, DeleteRealServer:
		if n.genl == nil {
			return sameError(len(ops), &KernelError{Op: opName(action), Errno: syscall.EPROTONOSUPPORT,
				Err: errors.New("opened without IPVS")})
		}
		conn, encode = n.genl, n.encodeIPVS
	case BindAddress, UnbindAddress:
		if err := n.lock(opName(action), DeviceName); err != nil {
			return sameError(len(ops), err)
		}
		link, err := n.nl.LinkByName(DeviceName)
		n.mu.Unlock()
		if err != nil {
			return sameError(len(ops), wrap(opName(action), DeviceName, err))
		}
		index := uint32(link.Attrs().Index)
		conn = n.route
		encode = func(b *nlBuf, op Op) error { return encodeAddress(b, op, index) }
	case AddEntry, DeleteEntry:
		conn, encode = n.nfnl, encodeEntry
	default:
		return sameError(len(ops), &KernelError{Op: action.String(), Errno: syscall.EINVAL,
			Err: errors.New("not a batchable action")})
	}
	if err := conn.lock(opName(action)); err != nil {
		return sameError(len(ops), err)
	}
	defer conn.mu.Unlock()

	var errs []error
	setErr := func(i int, err error) {
		if errs == nil {
			errs = make([]error, len(ops))
		}
		errs[i] = wrap(opName(action), opObject(ops[i]), err)
	}
	b := &conn.req
	for start := 0; start < len(ops); {
		b.reset(conn)
		var sent []int // op index of each message
		i := start
		for ; i < len(ops) && len(b.buf) < maxBatchBytes; i++ {
			if err := encode(b, ops[i]); err != nil {
				setErr(i, err)
				continue
			}
			sent = append(sent, i)
		}
		start = i
		if b.n == 0 {
			continue
		}
		b.ackLast()
		for m, err := range conn.exchange(b) {
			if err != nil {
				setErr(sent[m], err)
			}
		}
	}
	return errs
}

// sameError returns n copies of err.
func sameError(n int, err error) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// opObject names what an operation is about, as the single-call methods do in
// KernelError.Object.
func opObject(op Op) string {
	switch op.Action {
	case AddVirtualServer, UpdateVirtualServer:
		return op.Server.VSKey.String()
	case DeleteVirtualServer:
		return op.Key.String()
	case AddRealServer, UpdateRealServer, DrainRealServer, DeleteRealServer:
		return op.Key.String() + " " + op.Real.Addr.String()
	case BindAddress, UnbindAddress:
		return op.Addr.String()
	case AddEntry, DeleteEntry:
		return op.Set.Name + " " + op.Entry.String()
	}
	return ""
}

// encodeIPVS appends the generic netlink request of a virtual or real server
// operation.
func (n *Netlink) encodeIPVS(b *nlBuf, op Op) error {
	var cmd uint8
	var full bool // a new or changed object carries all its attributes
	key := op.Key
	switch op.Action {
	case AddVirtualServer:
		cmd, full, key = ipvsCmdNewService, true, op.Server.VSKey
	case UpdateVirtualServer:
		cmd, full, key = ipvsCmdSetService, true, op.Server.VSKey
	case DeleteVirtualServer:
		cmd = ipvsCmdDelService
	case AddRealServer:
		cmd, full = ipvsCmdNewDest, true
	case UpdateRealServer, DrainRealServer:
		cmd, full = ipvsCmdSetDest, true
	case DeleteRealServer:
		cmd = ipvsCmdDelDest
	}
	isDest := cmd >= ipvsCmdNewDest
	if isDest && proxier.FamilyOf(op.Real.Addr.Addr()) != key.Family() {
		// The kernel would take the first bytes of an IPv6 address for an IPv4 one.
		return syscall.EINVAL
	}
	flags := uint16(0)
	if cmd == ipvsCmdNewService || cmd == ipvsCmdNewDest {
		flags = unix.NLM_F_CREATE | unix.NLM_F_EXCL
	}
	svc, err := n.startIPVSMsg(b, cmd, flags, key)
	if err != nil {
		return err
	}
	if full && !isDest {
		vs := op.Server
		sched := vs.Scheduler
		if sched == "" {
			sched = DefaultScheduler
		}
		netmask := vs.Netmask
		if netmask == 0 {
			netmask = netmaskFor(key.Family())
		}
		b.str(ipvsSvcAttrSchedName, sched)
		var fl [8]byte // struct ip_vs_flags: the flags, then the mask of those to set
		binary.NativeEndian.PutUint32(fl[:4], uint32(vs.Flags&^FlagHashed))
		binary.NativeEndian.PutUint32(fl[4:], 0xffffffff)
		b.attr(ipvsSvcAttrFlags, fl[:])
		b.u32(ipvsSvcAttrTimeout, vs.Timeout)
		b.u32(ipvsSvcAttrNetmask, netmask)
	}
	b.endNest(svc)
	if isDest {
		rs := op.Real
		dst := b.nest(ipvsCmdAttrDest)
		b.attr(ipvsDestAttrAddr, rs.Addr.Addr().AsSlice())
		b.be16(ipvsDestAttrPort, rs.Addr.Port())
		if full {
			b.u32(ipvsDestAttrFwdMethod, ipvsFwdMasq)
			b.u32(ipvsDestAttrWeight, uint32(rs.Weight))
			b.u32(ipvsDestAttrUThresh, 0)
			b.u32(ipvsDestAttrLThresh, 0)
			b.u16(ipvsDestAttrAddrFamily, afOf(rs.Addr.Addr()))
		}
		b.endNest(dst)
	}
	b.endMsg()
	return nil
}

// startIPVSMsg opens an IPVS request for cmd and, in it, the service attribute with
// the virtual server's key; it returns the attribute's offset for endNest.
func (n *Netlink) startIPVSMsg(b *nlBuf, cmd uint8, flags uint16, key VSKey) (int, error) {
	proto := protoNum(key.Protocol)
	if proto == 0 || !key.Addr.IsValid() {
		return 0, syscall.EINVAL
	}
	b.startMsg(n.ipvsFamily, flags)
	b.bytes(cmd, ipvsGenlVersion, 0, 0)
	svc := b.nest(ipvsCmdAttrService)
	b.u16(ipvsSvcAttrAF, afOf(key.Addr))
	b.u16(ipvsSvcAttrProtocol, uint16(proto))
	b.attr(ipvsSvcAttrAddr, key.Addr.AsSlice())
	b.be16(ipvsSvcAttrPort, key.Port)
	return svc, nil
}

// encodeAddress appends the rtnetlink request binding or unbinding a host address
// (/32 or /128) on the interface index. IPv6 ones skip duplicate address detection,
// so they are usable at once.
func encodeAddress(b *nlBuf, op Op, index uint32) error {
	a := op.Addr
	if !a.IsValid() {
		return syscall.EINVAL
	}
	typ, flags := uint16(unix.RTM_NEWADDR), uint16(unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	if op.Action == UnbindAddress {
		typ, flags = unix.RTM_DELADDR, 0
	}
	var ifaFlags uint8
	if a.Is6() {
		ifaFlags = unix.IFA_F_NODAD
	}
	b.startMsg(typ, flags)
	// struct ifaddrmsg: family, prefix length, flags, scope (universe), index.
	b.bytes(uint8(afOf(a)), uint8(a.BitLen()), ifaFlags, unix.RT_SCOPE_UNIVERSE)
	var idx [4]byte
	binary.NativeEndian.PutUint32(idx[:], index)
	b.bytes(idx[:]...)
	b.attr(unix.IFA_LOCAL, a.AsSlice())
	b.attr(unix.IFA_ADDRESS, a.AsSlice())
	b.endMsg()
	return nil
}

// encodeEntry appends the ipset request adding or deleting a set member. It sends
// exactly the attributes of the member's set type, as ipset(8) does: the kernel's
// bitmap:port type rejects a protocol attribute, which vishvananda/netlink's IpsetAdd
// always sends (found on a 6.1 kernel), so node ports could not be added through it.
func encodeEntry(b *nlBuf, op Op) error {
	set, e := op.Set.Name, op.Entry
	if set == "" || len(set) > maxSetName {
		return fmt.Errorf("set name %q empty or longer than %d characters: %w", set, maxSetName, syscall.EINVAL)
	}
	cmd := uint16(nl.IPSET_CMD_ADD)
	if op.Action == DeleteEntry {
		cmd = nl.IPSET_CMD_DEL
	}
	// Without NLM_F_EXCL ipset ignores adding a member twice and deleting a missing
	// one; with it both are errors, which Apply tolerates and the conformance suite
	// expects.
	b.startMsg(cmd|unix.NFNL_SUBSYS_IPSET<<8, unix.NLM_F_EXCL)
	b.bytes(unix.AF_INET, nl.NFNETLINK_V0, 0, 0) // struct nfgenmsg; ipset ignores the family here
	b.u8(nl.IPSET_ATTR_PROTOCOL, nl.IPSET_PROTOCOL)
	b.str(nl.IPSET_ATTR_SETNAME, set)
	data := b.nest(nl.IPSET_ATTR_DATA)
	if e.IP.IsValid() {
		ipsetAddr(b, nl.IPSET_ATTR_IP, e.IP)
	}
	if e.Protocol != 0 || !e.IP.IsValid() {
		b.be16(nl.IPSET_ATTR_PORT|unix.NLA_F_NET_BYTEORDER, e.Port)
	}
	if e.Protocol != 0 {
		b.u8(nl.IPSET_ATTR_PROTO, protoNum(e.Protocol))
	}
	switch {
	case e.IP2.IsValid():
		ipsetAddr(b, nl.IPSET_ATTR_IP2, e.IP2)
	case e.Net.IsValid():
		ipsetAddr(b, nl.IPSET_ATTR_IP2, e.Net.Addr())
		b.u8(nl.IPSET_ATTR_CIDR2, uint8(e.Net.Bits()))
	}
	b.endNest(data)
	b.endMsg()
	return nil
}

// ipsetAddr appends ipset's nested address attribute.
func ipsetAddr(b *nlBuf, typ uint16, a netip.Addr) {
	inner := uint16(nl.IPSET_ATTR_IPADDR_IPV4)
	if a.Is6() {
		inner = nl.IPSET_ATTR_IPADDR_IPV6
	}
	off := b.nest(typ)
	b.attr(inner|unix.NLA_F_NET_BYTEORDER, a.AsSlice())
	b.endNest(off)
}

// afOf returns the address family constant of an address.
func afOf(a netip.Addr) uint16 {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// ipvsFamilyID resolves IPVS's generic netlink family. Families are global, not per
// network namespace, so the caller's namespace answers for every one.
func ipvsFamilyID() (uint16, error) {
	f, err := netlink.GenlFamilyGet("IPVS")
	if err != nil {
		return 0, err
	}
	return f.ID, nil
}
