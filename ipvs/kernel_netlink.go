package ipvs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	libipvs "github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/kproxy/kproxy/proxier"
)

var _ Kernel = &Netlink{}

// Netlink is the kernel implementation of Kernel. Everything goes through netlink
// sockets opened inside one network namespace: IPVS through github.com/moby/ipvs,
// the dummy device, its addresses and the creation, listing and destruction of ipsets
// through github.com/vishvananda/netlink (v1.3 knows every set type IPVS mode uses, so
// no ipset binary is executed). The operations a plan has thousands of (virtual and
// real servers, addresses, set members) are encoded by kernel_batch.go and sent many
// per system call (Batch), or one at a time through the single-operation methods.
// Sysctls are written from a thread switched into the namespace.
//
// Calls through the libraries' handles are serialised by mu (moby/ipvs handles are not
// safe for concurrent use); the batch sockets each have their own lock, taken after
// mu when both are needed, so that batches on different sockets run concurrently.
type Netlink struct {
	mu     sync.Mutex
	ipvs   *libipvs.Handle
	nl     *netlink.Handle
	genl   *nlConn        // IPVS requests; nil when opened without IPVS
	route  *nlConn        // address requests
	nfnl   *nlConn        // ipset member requests
	ns     netns.NsHandle // netns.None() for the caller's namespace
	nsPath string         // the namespace file, "" for the caller's namespace
	closed bool

	ipvsFamily uint16 // IPVS's generic netlink family
}

// NetlinkOptions configures NewNetlink.
type NetlinkOptions struct {
	// Netns, when set, programs that network namespace: a name as created by "ip
	// netns add" (resolved under /var/run/netns) or an absolute path such as
	// /proc/PID/ns/net. Empty means the caller's namespace.
	Netns string
}

// NewNetlink opens the netlink sockets, inside opts.Netns when set, and checks that
// the kernel has IPVS (moby/ipvs loads the ip_vs module on first use). Close it when
// done.
func NewNetlink(opts NetlinkOptions) (*Netlink, error) {
	n, err := openNetlinkWithoutIPVS(opts.Netns)
	if err != nil {
		return nil, err
	}
	path := n.nsPath
	if n.ipvs, err = libipvs.New(path); err != nil {
		n.Close()
		return nil, fmt.Errorf("ipvs: open IPVS netlink socket: %w", err)
	}
	// moby/ipvs returns a handle even when the kernel lacks IPVS; the first request
	// tells.
	if _, err := n.ipvs.GetServices(); err != nil {
		n.Close()
		return nil, fmt.Errorf("ipvs: kernel has no IPVS support (modprobe ip_vs): %w", err)
	}
	if n.ipvsFamily, err = ipvsFamilyID(); err != nil {
		n.Close()
		return nil, fmt.Errorf("ipvs: resolve the IPVS generic netlink family: %w", err)
	}
	if n.genl, err = openNLConn(n.ns, unix.NETLINK_GENERIC); err != nil {
		n.Close()
		return nil, fmt.Errorf("ipvs: open IPVS netlink socket: %w", err)
	}
	return n, nil
}

// openNetlinkWithoutIPVS opens the route and netfilter sockets NewNetlink opens, but
// not the IPVS one: for cleaning up kube-ipvs0 and the ipsets on a kernel without
// IPVS, where NewNetlink fails (and would try to load ip_vs).
func openNetlinkWithoutIPVS(spec string) (*Netlink, error) {
	path := spec
	if path != "" && !filepath.IsAbs(path) {
		path = filepath.Join("/var/run/netns", path)
	}
	n := &Netlink{ns: netns.None(), nsPath: path}
	var err error
	if path != "" {
		if n.ns, err = netns.GetFromPath(path); err != nil {
			return nil, fmt.Errorf("ipvs: open network namespace %s: %w", path, err)
		}
		n.nl, err = netlink.NewHandleAt(n.ns, unix.NETLINK_ROUTE, unix.NETLINK_NETFILTER)
	} else {
		n.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE, unix.NETLINK_NETFILTER)
	}
	if err == nil {
		n.route, err = openNLConn(n.ns, unix.NETLINK_ROUTE)
	}
	if err == nil {
		n.nfnl, err = openNLConn(n.ns, unix.NETLINK_NETFILTER)
	}
	if err != nil {
		_ = n.Close()
		return nil, fmt.Errorf("ipvs: open netlink sockets: %w", err)
	}
	return n, nil
}

// Close releases the sockets. The Netlink must not be used afterwards.
func (n *Netlink) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	if n.ipvs != nil {
		n.ipvs.Close()
	}
	if n.nl != nil {
		n.nl.Close()
	}
	for _, c := range []*nlConn{n.genl, n.route, n.nfnl} {
		if c != nil {
			_ = c.close()
		}
	}
	if n.ns.IsOpen() {
		return n.ns.Close()
	}
	return nil
}

// lock serialises calls and refuses them after Close: a closed vishvananda handle
// silently falls back to the calling thread's namespace, which must never happen.
func (n *Netlink) lock(op, object string) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return &KernelError{Op: op, Object: object, Errno: syscall.EBADF, Err: errors.New("handle closed")}
	}
	return nil
}

// wrap turns a library error into a *KernelError.
func wrap(op, object string, err error) error {
	if err == nil {
		return nil
	}
	ke := &KernelError{Op: op, Object: object, Err: err}
	var errno syscall.Errno
	var ipsetErr nl.IPSetError
	switch {
	case errors.As(err, &ipsetErr):
		ke.Errno = ipsetErrno(op, int(ipsetErr))
	case errors.As(err, &errno) && errno >= nl.IPSET_ERR_PRIVATE:
		ke.Errno = ipsetErrno(op, int(errno))
	case errors.As(err, &errno):
		ke.Errno = errno
	case errors.As(err, new(netlink.LinkNotFoundError)):
		ke.Errno = syscall.ENODEV
	}
	return ke
}

// ipsetErrno maps ipset's private error codes to the errno they stand for.
func ipsetErrno(op string, code int) syscall.Errno {
	switch code {
	case nl.IPSET_ERR_EXIST:
		// "Element exists" when adding, "element not added" when deleting.
		if op == OpDeleteEntry {
			return syscall.ENOENT
		}
		return syscall.EEXIST
	case nl.IPSET_ERR_EXIST_SETNAME2:
		return syscall.EEXIST
	case nl.IPSET_ERR_BUSY, nl.IPSET_ERR_REFERENCED:
		return syscall.EBUSY
	case nl.IPSET_ERR_FIND_TYPE:
		return syscall.ENOENT
	}
	return syscall.EINVAL
}

// safe runs an ipset call of vishvananda/netlink, which panics on a non-errno socket
// error (it type-asserts every error to syscall.Errno), and returns that as an error.
func safe(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("netlink ipset request failed: %v", r)
		}
	}()
	return fn()
}

// VirtualServers implements Kernel.
func (n *Netlink) VirtualServers(_ context.Context, family proxier.IPFamily) ([]*VirtualServer, error) {
	if err := n.lock(OpListServices, ""); err != nil {
		return nil, err
	}
	defer n.mu.Unlock()
	svcs, err := n.ipvs.GetServices()
	if err != nil {
		return nil, wrap(OpListServices, "", err)
	}
	out := make([]*VirtualServer, 0, len(svcs))
	for _, s := range svcs {
		if s.FWMark != 0 || addrFamily(s.AddressFamily) != family {
			continue
		}
		addr, ok := toAddr(s.Address, family)
		proto := fromProtoNum(s.Protocol)
		if !ok || proto == 0 {
			continue // not something kproxy could have made
		}
		out = append(out, &VirtualServer{
			VSKey:     VSKey{Addr: addr, Protocol: proto, Port: s.Port},
			Scheduler: s.SchedName,
			Flags:     Flags(s.Flags) &^ FlagHashed,
			Timeout:   s.Timeout,
			Netmask:   s.Netmask,
		})
	}
	return out, nil
}

// RealServers implements Kernel.
func (n *Netlink) RealServers(_ context.Context, vs VSKey) ([]RealServer, error) {
	if n.genl == nil {
		return nil, &KernelError{Op: OpListDestinations, Object: vs.String(), Errno: syscall.EPROTONOSUPPORT,
			Err: errors.New("opened without IPVS")}
	}
	if err := n.genl.lock(OpListDestinations); err != nil {
		return nil, err
	}
	defer n.genl.mu.Unlock()
	out, err := n.dumpRealServers(vs, nil)
	if err != nil {
		return nil, wrap(OpListDestinations, vs.String(), err)
	}
	sortReals(out)
	return out, nil
}

// AddVirtualServer implements Kernel.
func (n *Netlink) AddVirtualServer(_ context.Context, vs *VirtualServer) error {
	return n.one(Op{Action: AddVirtualServer, Server: vs})
}

// UpdateVirtualServer implements Kernel.
func (n *Netlink) UpdateVirtualServer(_ context.Context, vs *VirtualServer) error {
	return n.one(Op{Action: UpdateVirtualServer, Server: vs})
}

// DeleteVirtualServer implements Kernel.
func (n *Netlink) DeleteVirtualServer(_ context.Context, vs VSKey) error {
	return n.one(Op{Action: DeleteVirtualServer, Key: vs})
}

// AddRealServer implements Kernel. A real server of the other family is refused with
// EINVAL; the kernel itself would read the first four bytes of an IPv6 address as an
// IPv4 one (fd00::5 becomes 253.0.0.0).
func (n *Netlink) AddRealServer(_ context.Context, vs VSKey, rs RealServer) error {
	return n.one(Op{Action: AddRealServer, Key: vs, Real: rs})
}

// UpdateRealServer implements Kernel.
func (n *Netlink) UpdateRealServer(_ context.Context, vs VSKey, rs RealServer) error {
	return n.one(Op{Action: UpdateRealServer, Key: vs, Real: rs})
}

// DeleteRealServer implements Kernel.
func (n *Netlink) DeleteRealServer(_ context.Context, vs VSKey, rs netip.AddrPort) error {
	return n.one(Op{Action: DeleteRealServer, Key: vs, Real: RealServer{Addr: rs}})
}

// one performs a single batchable operation: a batch of one, so that single calls and
// batches share their encoding.
func (n *Netlink) one(op Op) error {
	if errs := n.batch([]Op{op}); errs != nil {
		return errs[0]
	}
	return nil
}

// SetTimeouts implements Kernel.
func (n *Netlink) SetTimeouts(_ context.Context, t Timeouts) error {
	if err := n.lock(OpSetTimeouts, ""); err != nil {
		return err
	}
	defer n.mu.Unlock()
	return wrap(OpSetTimeouts, "", n.ipvs.SetConfig(&libipvs.Config{TimeoutTCP: t.TCP, TimeoutTCPFin: t.TCPFin, TimeoutUDP: t.UDP}))
}

func addrFamily(af uint16) proxier.IPFamily {
	if af == unix.AF_INET6 {
		return proxier.IPv6
	}
	return proxier.IPv4
}

// toAddr converts a library address of a known family.
func toAddr(ip net.IP, f proxier.IPFamily) (netip.Addr, bool) {
	if f == proxier.IPv4 {
		ip = ip.To4()
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}, false
	}
	return a, true
}

// protoNum returns the IANA number of a protocol.
func protoNum(p proxier.Protocol) uint8 {
	switch p {
	case proxier.ProtocolTCP:
		return unix.IPPROTO_TCP
	case proxier.ProtocolUDP:
		return unix.IPPROTO_UDP
	case proxier.ProtocolSCTP:
		return unix.IPPROTO_SCTP
	}
	return 0
}

// fromProtoNum is the inverse of protoNum; 0 for other protocols.
func fromProtoNum(n uint16) proxier.Protocol {
	switch n {
	case unix.IPPROTO_TCP:
		return proxier.ProtocolTCP
	case unix.IPPROTO_UDP:
		return proxier.ProtocolUDP
	case unix.IPPROTO_SCTP:
		return proxier.ProtocolSCTP
	}
	return 0
}

// EnsureDevice implements Kernel. The device is left down, as kube-proxy leaves it:
// addresses on a down dummy still get local routes, and a down device does not
// answer ARP for them.
func (n *Netlink) EnsureDevice(_ context.Context) (bool, error) {
	if err := n.lock(OpEnsureDevice, DeviceName); err != nil {
		return false, err
	}
	defer n.mu.Unlock()
	if _, err := n.nl.LinkByName(DeviceName); err == nil {
		return false, nil
	} else if !errors.As(err, new(netlink.LinkNotFoundError)) {
		return false, wrap(OpEnsureDevice, DeviceName, err)
	}
	err := n.nl.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: DeviceName}})
	if errors.Is(err, syscall.EEXIST) {
		return false, nil
	}
	return err == nil, wrap(OpEnsureDevice, DeviceName, err)
}

// DeleteDevice implements Kernel.
func (n *Netlink) DeleteDevice(_ context.Context) error {
	if err := n.lock(OpDeleteDevice, DeviceName); err != nil {
		return err
	}
	defer n.mu.Unlock()
	link, err := n.nl.LinkByName(DeviceName)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		return nil
	}
	if err != nil {
		return wrap(OpDeleteDevice, DeviceName, err)
	}
	if link.Type() != "dummy" {
		return &KernelError{Op: OpDeleteDevice, Object: DeviceName, Errno: syscall.EINVAL,
			Err: fmt.Errorf("%s is a %s device, not a dummy; not deleting it", DeviceName, link.Type())}
	}
	return wrap(OpDeleteDevice, DeviceName, n.nl.LinkDel(link))
}

// DeviceAddresses implements Kernel.
func (n *Netlink) DeviceAddresses(_ context.Context, family proxier.IPFamily) ([]netip.Addr, bool, error) {
	if err := n.lock(OpListAddresses, DeviceName); err != nil {
		return nil, false, err
	}
	defer n.mu.Unlock()
	link, err := n.nl.LinkByName(DeviceName)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, wrap(OpListAddresses, DeviceName, err)
	}
	addrs, err := n.nl.AddrList(link, nlFamily(family))
	if err != nil {
		return nil, true, wrap(OpListAddresses, DeviceName, err)
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if ip, ok := toAddr(a.IP, family); ok {
			out = append(out, ip)
		}
	}
	return out, true, nil
}

// AddAddress implements Kernel.
func (n *Netlink) AddAddress(_ context.Context, addr netip.Addr) error {
	return n.one(Op{Action: BindAddress, Addr: addr})
}

// DeleteAddress implements Kernel.
func (n *Netlink) DeleteAddress(_ context.Context, addr netip.Addr) error {
	return n.one(Op{Action: UnbindAddress, Addr: addr})
}

// HostAddresses implements Kernel.
func (n *Netlink) HostAddresses(_ context.Context, family proxier.IPFamily) ([]netip.Addr, error) {
	if err := n.lock(OpListHostAddresses, ""); err != nil {
		return nil, err
	}
	defer n.mu.Unlock()
	dummy := -1
	if link, err := n.nl.LinkByName(DeviceName); err == nil {
		dummy = link.Attrs().Index
	}
	addrs, err := n.nl.AddrList(nil, nlFamily(family))
	if err != nil {
		return nil, wrap(OpListHostAddresses, "", err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		ip, ok := toAddr(a.IP, family)
		if !ok || a.LinkIndex == dummy || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
			continue
		}
		out = append(out, ip)
	}
	return out, nil
}

func nlFamily(f proxier.IPFamily) int {
	if f == proxier.IPv6 {
		return netlink.FAMILY_V6
	}
	return netlink.FAMILY_V4
}

// ListSet implements Kernel.
func (n *Netlink) ListSet(_ context.Context, name string) (*SetContent, error) {
	if err := n.lock(OpListSet, name); err != nil {
		return nil, err
	}
	defer n.mu.Unlock()
	var res *netlink.IPSetResult
	err := safe(func() (err error) {
		res, err = n.nl.IpsetList(name)
		return err
	})
	if err != nil {
		return nil, wrap(OpListSet, name, err)
	}
	c := &SetContent{Type: SetType(res.TypeName), Family: proxier.IPv4}
	if res.Family == unix.AF_INET6 {
		c.Family = proxier.IPv6
	}
	for _, e := range res.Entries {
		if entry, ok := fromIPSetEntry(e, c.Type, c.Family); ok {
			c.Entries = append(c.Entries, entry)
		}
	}
	return c, nil
}

// CreateSet implements Kernel.
func (n *Netlink) CreateSet(_ context.Context, spec SetSpec) error {
	if err := n.lock(OpCreateSet, spec.Name); err != nil {
		return err
	}
	defer n.mu.Unlock()
	opts := netlink.IpsetCreateOptions{MaxElements: setMaxElem}
	switch spec.Type {
	case BitmapPort:
		opts = netlink.IpsetCreateOptions{PortFrom: 0, PortTo: 65535}
	default:
		opts.Family = unix.AF_INET
		if spec.Family == proxier.IPv6 {
			opts.Family = unix.AF_INET6
		}
	}
	return wrap(OpCreateSet, spec.Name, safe(func() error { return n.nl.IpsetCreate(spec.Name, string(spec.Type), opts) }))
}

// DestroySet implements Kernel.
func (n *Netlink) DestroySet(_ context.Context, name string) error {
	if err := n.lock(OpDestroySet, name); err != nil {
		return err
	}
	defer n.mu.Unlock()
	return wrap(OpDestroySet, name, safe(func() error { return n.nl.IpsetDestroy(name) }))
}

// AddEntry implements Kernel.
func (n *Netlink) AddEntry(_ context.Context, set string, e SetEntry) error {
	return n.one(Op{Action: AddEntry, Set: &SetSpec{Name: set}, Entry: e})
}

// DeleteEntry implements Kernel.
func (n *Netlink) DeleteEntry(_ context.Context, set string, e SetEntry) error {
	return n.one(Op{Action: DeleteEntry, Set: &SetSpec{Name: set}, Entry: e})
}

// fromIPSetEntry converts a listed member back, for a set of type t.
func fromIPSetEntry(e netlink.IPSetEntry, t SetType, f proxier.IPFamily) (SetEntry, bool) {
	var out SetEntry
	var ok bool
	if t == BitmapPort {
		if e.Port == nil {
			return out, false
		}
		return SetEntry{Port: *e.Port}, true
	}
	if out.IP, ok = toAddr(e.IP, f); !ok {
		return out, false
	}
	if t == HashIP {
		return out, true
	}
	if e.Port == nil || e.Protocol == nil {
		return out, false
	}
	out.Port = *e.Port
	if out.Protocol = fromProtoNum(uint16(*e.Protocol)); out.Protocol == 0 {
		return out, false
	}
	switch t {
	case HashIPPortIP:
		if out.IP2, ok = toAddr(e.IP2, f); !ok {
			return out, false
		}
	case HashIPPortNet:
		a, ok := toAddr(e.IP2, f)
		if !ok {
			return out, false
		}
		out.Net = netip.PrefixFrom(a, int(e.CIDR2))
	}
	return out, true
}

// Sysctl implements Kernel.
func (n *Netlink) Sysctl(_ context.Context, name string) (string, error) {
	if err := n.lock(OpGetSysctl, name); err != nil {
		return "", err
	}
	defer n.mu.Unlock()
	path, err := sysctlPath(name)
	if err != nil {
		return "", &KernelError{Op: OpGetSysctl, Object: name, Errno: syscall.EINVAL, Err: err}
	}
	var val []byte
	err = n.inNetns(func() (err error) {
		val, err = os.ReadFile(path)
		return err
	})
	if err != nil {
		return "", wrap(OpGetSysctl, name, err)
	}
	return strings.TrimSpace(string(val)), nil
}

// SetSysctl implements Kernel.
func (n *Netlink) SetSysctl(_ context.Context, name, value string) error {
	if err := n.lock(OpSetSysctl, name); err != nil {
		return err
	}
	defer n.mu.Unlock()
	path, err := sysctlPath(name)
	if err != nil {
		return &KernelError{Op: OpSetSysctl, Object: name, Errno: syscall.EINVAL, Err: err}
	}
	return wrap(OpSetSysctl, name, n.inNetns(func() error {
		return os.WriteFile(path, []byte(value), 0o644)
	}))
}

// sysctlPath returns the /proc/sys file of a network sysctl; other keys are refused,
// since only net.* sysctls belong to a network namespace.
func sysctlPath(name string) (string, error) {
	name = strings.TrimPrefix(name, "/")
	if !strings.HasPrefix(name, "net/") || strings.Contains(name, "..") {
		return "", fmt.Errorf("%q is not a network sysctl path", name)
	}
	return "/proc/sys/" + name, nil
}

// inNetns runs fn on a thread switched into the handle's namespace: /proc/sys/net
// shows the namespace of the thread that opens it.
func (n *Netlink) inNetns(fn func() error) error { return runInNetns(n.ns, fn) }

// runInNetns runs fn on a thread switched into ns, or directly when ns is netns.None().
func runInNetns(ns netns.NsHandle, fn func() error) error {
	if !ns.IsOpen() {
		return fn()
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	err = fn()
	if serr := netns.Set(orig); serr != nil {
		// The thread is stuck in the other namespace: keep it locked so the runtime
		// discards it when this goroutine ends.
		return errors.Join(err, serr)
	}
	runtime.UnlockOSThread()
	return err
}

// KernelVersion implements Kernel.
func (n *Netlink) KernelVersion(_ context.Context) (int, int, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return 0, 0, wrap(OpKernelVersion, "", err)
	}
	release := unix.ByteSliceToString(u.Release[:])
	major, minor, err := parseKernelRelease(release)
	if err != nil {
		return 0, 0, &KernelError{Op: OpKernelVersion, Object: release, Errno: syscall.EINVAL, Err: err}
	}
	return major, minor, nil
}

// parseKernelRelease extracts major and minor from a release such as
// "6.1.0-28-cloud-amd64".
func parseKernelRelease(r string) (int, int, error) {
	parts := strings.SplitN(r, ".", 3)
	if len(parts) < 2 {
		return 0, 0, fmt.Errorf("unrecognised kernel release %q", r)
	}
	major, err := strconv.Atoi(parts[0])
	if err != nil {
		return 0, 0, fmt.Errorf("unrecognised kernel release %q", r)
	}
	minorStr := parts[1]
	if i := strings.IndexFunc(minorStr, func(c rune) bool { return c < '0' || c > '9' }); i >= 0 {
		minorStr = minorStr[:i]
	}
	minor, err := strconv.Atoi(minorStr)
	if err != nil {
		return 0, 0, fmt.Errorf("unrecognised kernel release %q", r)
	}
	return major, minor, nil
}
