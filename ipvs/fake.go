package ipvs

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/kproxy/kproxy/proxier"
)

var (
	_ Kernel  = &Fake{}
	_ Batcher = &Fake{}
)

// Fake is an in-memory Kernel that behaves like the kernel as seen through Netlink,
// errnos included; the conformance suite runs unchanged against both (the Netlink run
// is in the VM tests). It answers EEXIST for a duplicate virtual or real server, set
// or member and for a bound address; ESRCH for updating or deleting a missing virtual
// server and adding a real server to one; ENOENT for a missing real server, set or
// member and for an unknown scheduler; EINVAL for a real server of the other family
// or a member that does not fit its set; ENODEV for an address on a missing device
// and EADDRNOTAVAIL for unbinding an address that is not bound. Like the kernel it
// lists no real servers (and no error) for a missing virtual server, accepts
// destroying a missing set, and deletes a virtual server's real servers with it. It
// is stricter in one place: a virtual server with port 0, which the kernel accepts as
// "all ports", is rejected with EINVAL because kproxy never means it.
//
// Tests drive what the kernel would do on its own: SetConnections sets a real
// server's connection counters (for graceful termination), SetHostAddresses the
// node's interface addresses. Stats counts every call per operation name; Hook and
// FailNext inject faults.
//
// The zero value is ready to use. Fake is safe for concurrent use.
type Fake struct {
	// Hook, when set, runs at the start of every operation with its Op* name and the
	// object it concerns; a non-nil error fails the operation before anything
	// changes. Set it before sharing the Fake between goroutines.
	Hook func(op, object string) error

	mu       sync.Mutex
	servers  map[VSKey]*VirtualServer
	device   bool
	devAddrs map[netip.Addr]struct{}
	host     []netip.Addr
	sets     map[string]*fakeSet
	sysctls  map[string]string
	timeouts Timeouts
	version  [2]int
	calls    map[string]int
	batches  int
	failNext map[string][]error
	inUse    func(set string) bool
}

type fakeSet struct {
	spec    SetSpec
	entries map[SetEntry]struct{}
}

// FakeStats counts what the Fake was asked to do.
type FakeStats struct {
	// Calls counts every call, failed ones included, per Op* name.
	Calls map[string]int
	// Writes is the number of calls of operations that change state (IsWrite).
	Writes int
	// Batches is the number of Batch calls; the operations in them are counted in
	// Calls too.
	Batches int
}

// Total returns the number of calls of any operation.
func (s FakeStats) Total() int {
	n := 0
	for _, c := range s.Calls {
		n += c
	}
	return n
}

func (f *Fake) init() {
	if f.servers != nil {
		return
	}
	f.servers = map[VSKey]*VirtualServer{}
	f.devAddrs = map[netip.Addr]struct{}{}
	f.sets = map[string]*fakeSet{}
	f.sysctls = map[string]string{}
	f.calls = map[string]int{}
	f.failNext = map[string][]error{}
	f.version = [2]int{6, 1}
	for _, name := range []string{"net/ipv4/vs/conntrack", "net/ipv4/vs/conn_reuse_mode",
		"net/ipv4/vs/expire_nodest_conn", "net/ipv4/vs/expire_quiescent_template",
		"net/ipv4/ip_forward", "net/ipv4/conf/all/arp_ignore", "net/ipv4/conf/all/arp_announce"} {
		f.sysctls[name] = "0"
	}
	f.sysctls["net/ipv4/vs/conn_reuse_mode"] = "1"
}

// begin locks the Fake (every caller defers the unlock before calling it), counts the
// call and runs fault injection.
func (f *Fake) begin(ctx context.Context, op, object string) error {
	f.mu.Lock()
	f.init()
	f.calls[op]++
	if err := ctx.Err(); err != nil {
		return &KernelError{Op: op, Object: object, Err: err}
	}
	if q := f.failNext[op]; len(q) > 0 {
		f.failNext[op] = q[1:]
		return q[0]
	}
	if f.Hook != nil {
		if err := f.Hook(op, object); err != nil {
			return err
		}
	}
	return nil
}

// FailNext makes the next call of op (an Op* name) fail with err without changing
// anything; queued errors are used in order.
func (f *Fake) FailNext(op string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	f.failNext[op] = append(f.failNext[op], err)
}

// SetInUse installs the check DestroySet uses to refuse destroying a set an iptables
// rule still references (EBUSY), e.g. a scan of an iptables.Fake's rules.
func (f *Fake) SetInUse(inUse func(set string) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inUse = inUse
}

// Stats returns a copy of the call counters.
func (f *Fake) Stats() FakeStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	s := FakeStats{Calls: maps.Clone(f.calls), Batches: f.batches}
	for op, n := range f.calls {
		if IsWrite(op) {
			s.Writes += n
		}
	}
	return s
}

// ResetStats zeroes the call counters.
func (f *Fake) ResetStats() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	clear(f.calls)
	f.batches = 0
}

// Batch implements Batcher like the kernel handles a netlink batch: the operations in
// order, each on its own (counted, hooked and failed like a single call), going on
// after one fails.
func (f *Fake) Batch(ctx context.Context, ops []Op) []error {
	f.mu.Lock()
	f.init()
	f.batches++
	f.mu.Unlock()
	return batchOneByOne(ctx, f, ops)
}

// SetHostAddresses sets the node's interface addresses that HostAddresses reports.
func (f *Fake) SetHostAddresses(addrs ...netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	f.host = slices.Clone(addrs)
}

// SetKernelVersion sets what KernelVersion reports (6.1 by default).
func (f *Fake) SetKernelVersion(major, minor int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	f.version = [2]int{major, minor}
}

// SetConnections sets the connection counters of a real server, as traffic would.
func (f *Fake) SetConnections(vs VSKey, rs netip.AddrPort, active, inactive int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	v, ok := f.servers[vs]
	if !ok {
		return kernelErr("set_connections", vs.String(), syscall.ESRCH)
	}
	i, ok := findReal(v, rs)
	if !ok {
		return kernelErr("set_connections", rs.String(), syscall.ENOENT)
	}
	v.Reals[i].ActiveConns, v.Reals[i].InactiveConns = active, inactive
	return nil
}

// Timeouts returns the last timeouts set with SetTimeouts.
func (f *Fake) Timeouts() Timeouts {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.timeouts
}

// Snapshot returns the Fake's contents for one family as a Snapshot (every virtual
// server, every set that exists), for assertions.
func (f *Fake) Snapshot(family proxier.IPFamily) *Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	s := NewSnapshot(family)
	s.Device = f.device
	for k, vs := range f.servers {
		if k.Family() == family {
			s.Servers[k] = vs.Clone()
		}
	}
	for a := range f.devAddrs {
		if proxier.FamilyOf(a) == family {
			s.Addresses[a] = struct{}{}
		}
	}
	for name, set := range f.sets {
		if set.spec.Family == family {
			s.Sets[name] = &SetState{Spec: set.spec, Entries: maps.Clone(set.entries)}
		}
	}
	return s
}

// Dump renders the whole Fake as sorted text (virtual servers with their real servers,
// device addresses, sets), for golden tests and failure messages.
func (f *Fake) Dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	var b strings.Builder
	for _, k := range sortedServerKeys(f.servers) {
		vs := f.servers[k]
		fmt.Fprintf(&b, "vs %s flags=%#x netmask=%#x\n", vs, uint32(vs.Flags), vs.Netmask)
		for _, r := range vs.Reals {
			fmt.Fprintf(&b, "  rs %s active=%d inactive=%d\n", r, r.ActiveConns, r.InactiveConns)
		}
	}
	if f.device {
		fmt.Fprintf(&b, "device %s\n", DeviceName)
		for _, a := range sortedAddrs(f.devAddrs) {
			fmt.Fprintf(&b, "  addr %s\n", a)
		}
	}
	for _, name := range sortedKeys(f.sets) {
		set := f.sets[name]
		fmt.Fprintf(&b, "set %s %s\n", name, set.spec.Type)
		for _, e := range sortedEntries(set.entries) {
			fmt.Fprintf(&b, "  %s\n", e)
		}
	}
	return b.String()
}

// VirtualServers implements Kernel.
func (f *Fake) VirtualServers(ctx context.Context, family proxier.IPFamily) ([]*VirtualServer, error) {
	defer f.mu.Unlock()
	if err := f.begin(ctx, OpListServices, ""); err != nil {
		return nil, err
	}
	var out []*VirtualServer
	for _, k := range sortedServerKeys(f.servers) {
		if k.Family() == family {
			out = append(out, f.servers[k].withoutReals())
		}
	}
	return out, nil
}

// RealServers implements Kernel.
func (f *Fake) RealServers(ctx context.Context, vs VSKey) ([]RealServer, error) {
	defer f.mu.Unlock()
	if err := f.begin(ctx, OpListDestinations, vs.String()); err != nil {
		return nil, err
	}
	v, ok := f.servers[vs]
	if !ok {
		// The kernel's destination dump finds nothing rather than failing.
		return nil, nil
	}
	return slices.Clone(v.Reals), nil
}

// AddVirtualServer implements Kernel.
func (f *Fake) AddVirtualServer(ctx context.Context, vs *VirtualServer) error {
	defer f.mu.Unlock()
	if err := f.begin(ctx, OpAddService, vs.VSKey.String()); err != nil {
		return err
	}
	if errno := validVirtualServer(vs); errno != 0 {
		return kernelErr(OpAddService, vs.VSKey.String(), errno)
	}
	if _, ok := f.servers[vs.VSKey]; ok {
		return kernelErr(OpAddService, vs.VSKey.String(), syscall.EEXIST)
	}
	f.servers[vs.VSKey] = vs.withoutReals()
	return nil
}

// UpdateVirtualServer implements Kernel.
func (f *Fake) UpdateVirtualServer(ctx context.Context, vs *VirtualServer) error {
	defer f.mu.Unlock()
	if err := f.begin(ctx, OpUpdateService, vs.VSKey.String()); err != nil {
		return err
	}
	if errno := validVirtualServer(vs); errno != 0 {
		return kernelErr(OpUpdateService, vs.VSKey.String(), errno)
	}
	cur, ok := f.servers[vs.VSKey]
	if !ok {
		return kernelErr(OpUpdateService, vs.VSKey.String(), syscall.ESRCH)
	}
	n := vs.withoutReals()
	n.Reals = cur.Reals
	f.servers[vs.VSKey] = n
	return nil
}

// validVirtualServer checks what the kernel checks (and port 0, see Fake).
func validVirtualServer(vs *VirtualServer) syscall.Errno {
	switch {
	case !vs.Addr.IsValid() || vs.Addr.Is4In6():
		return syscall.EINVAL
	case vs.Protocol != proxier.ProtocolTCP && vs.Protocol != proxier.ProtocolUDP && vs.Protocol != proxier.ProtocolSCTP:
		return syscall.EINVAL
	case vs.Port == 0:
		return syscall.EINVAL
	case !validScheduler(vs.Scheduler):
		return syscall.ENOENT
	case vs.Addr.Is6() && vs.Netmask > 128:
		return syscall.EINVAL
	}
	return 0
}

// DeleteVirtualServer implements Kernel.
func (f *Fake) DeleteVirtualServer(ctx context.Context, vs VSKey) error {
	defer f.mu.Unlock()
	if err := f.begin(ctx, OpDeleteService, vs.String()); err != nil {
		return err
	}
	if _, ok := f.servers[vs]; !ok {
		return kernelErr(OpDeleteService, vs.String(), syscall.ESRCH)
	}
	delete(f.servers, vs)
	return nil
}

// AddRealServer implements Kernel.
func (f *Fake) AddRealServer(ctx context.Context, vs VSKey, rs RealServer) error {
	obj := vs.String() + " " + rs.Addr.String()
	defer f.mu.Unlock()
	if err := f.begin(ctx, OpAddDestination, obj); err != nil {
		return err
	}
	v, ok := f.servers[vs]
	if !ok {
		return kernelErr(OpAddDestination, obj, syscall.ESRCH)
	}
	if errno := validReal(vs, rs); errno != 0 {
		return kernelErr(OpAddDestination, obj, errno)
	}
	i, ok := findReal(v, rs.Addr)
	if ok {
		return kernelErr(OpAddDestination, obj, syscall.EEXIST)
	}
	v.Reals = slices.Insert(v.Reals, i, RealServer{Addr: rs.Addr, Weight: rs.Weight})
	return nil
}

// validReal checks a real server against its virtual server.
func validReal(vs VSKey, rs RealServer) syscall.Errno {
	switch {
	case !rs.Addr.IsValid() || rs.Addr.Addr().Is4In6():
		return syscall.EINVAL
	case proxier.FamilyOf(rs.Addr.Addr()) != vs.Family():
		// Mixed families are only allowed for tunnel forwarding, never for NAT.
		return syscall.EINVAL
	case rs.Weight < 0:
		return syscall.ERANGE
	}
	return 0
}

// UpdateRealServer implements Kernel.
func (f *Fake) UpdateRealServer(ctx context.Context, vs VSKey, rs RealServer) error {
	obj := vs.String() + " " + rs.Addr.String()
	defer f.mu.Unlock()
	if err := f.begin(ctx, OpUpdateDestination, obj); err != nil {
		return err
	}
	v, ok := f.servers[vs]
	if !ok {
		return kernelErr(OpUpdateDestination, obj, syscall.ESRCH)
	}
	if errno := validReal(vs, rs); errno != 0 {
		return kernelErr(OpUpdateDestination, obj, errno)
	}
	i, ok := findReal(v, rs.Addr)
	if !ok {
		return kernelErr(OpUpdateDestination, obj, syscall.ENOENT)
	}
	v.Reals[i].Weight = rs.Weight
	return nil
}

// DeleteRealServer implements Kernel.
func (f *Fake) DeleteRealServer(ctx context.Context, vs VSKey, rs netip.AddrPort) error {
	obj := vs.String() + " " + rs.String()
	defer f.mu.Unlock()
	if err := f.begin(ctx, OpDeleteDestination, obj); err != nil {
		return err
	}
	v, ok := f.servers[vs]
	if !ok {
		return kernelErr(OpDeleteDestination, obj, syscall.ESRCH)
	}
	i, ok := findReal(v, rs)
	if !ok {
		return kernelErr(OpDeleteDestination, obj, syscall.ENOENT)
	}
	v.Reals = slices.Delete(v.Reals, i, i+1)
	return nil
}

func findReal(v *VirtualServer, a netip.AddrPort) (int, bool) {
	return slices.BinarySearchFunc(v.Reals, a, func(r RealServer, a netip.AddrPort) int { return r.Addr.Compare(a) })
}

// SetTimeouts implements Kernel.
func (f *Fake) SetTimeouts(ctx context.Context, t Timeouts) error {
	defer f.mu.Unlock()
	if err := f.begin(ctx, OpSetTimeouts, ""); err != nil {
		return err
	}
	if t.TCP < 0 || t.TCPFin < 0 || t.UDP < 0 {
		return kernelErr(OpSetTimeouts, "", syscall.EINVAL)
	}
	if t.TCP > 0 {
		f.timeouts.TCP = t.TCP
	}
	if t.TCPFin > 0 {
		f.timeouts.TCPFin = t.TCPFin
	}
	if t.UDP > 0 {
		f.timeouts.UDP = t.UDP
	}
	return nil
}

// EnsureDevice implements Kernel.
func (f *Fake) EnsureDevice(ctx context.Context) (bool, error) {
	defer f.mu.Unlock()
	if err := f.begin(ctx, OpEnsureDevice, DeviceName); err != nil {
		return false, err
	}
	created := !f.device
	f.device = true
	return created, nil
}

// DeleteDevice implements Kernel.
func (f *Fake) DeleteDevice(ctx context.Context) error {
	defer f.mu.Unlock()
	if err := f.begin(ctx, OpDeleteDevice, DeviceName); err != nil {
		return err
	}
	f.device = false
	clear(f.devAddrs)
	return nil
}

// DeviceAddresses implements Kernel.
func (f *Fake) DeviceAddresses(ctx context.Context, family proxier.IPFamily) ([]netip.Addr, bool, error) {
	defer f.mu.Unlock()
	if err := f.begin(ctx, OpListAddresses, DeviceName); err != nil {
		return nil, false, err
	}
	var out []netip.Addr
	for _, a := range sortedAddrs(f.devAddrs) {
		if proxier.FamilyOf(a) == family {
			out = append(out, a)
		}
	}
	return out, f.device, nil
}

// AddAddress implements Kernel.
func (f *Fake) AddAddress(ctx context.Context, addr netip.Addr) error {
	defer f.mu.Unlock()
	if err := f.begin(ctx, OpAddAddress, addr.String()); err != nil {
		return err
	}
	switch {
	case !f.device:
		return kernelErr(OpAddAddress, addr.String(), syscall.ENODEV)
	case !addr.IsValid():
		return kernelErr(OpAddAddress, addr.String(), syscall.EINVAL)
	}
	if _, ok := f.devAddrs[addr]; ok {
		return kernelErr(OpAddAddress, addr.String(), syscall.EEXIST)
	}
	f.devAddrs[addr] = struct{}{}
	return nil
}

// DeleteAddress implements Kernel.
func (f *Fake) DeleteAddress(ctx context.Context, addr netip.Addr) error {
	defer f.mu.Unlock()
	if err := f.begin(ctx, OpDeleteAddress, addr.String()); err != nil {
		return err
	}
	if !f.device {
		return kernelErr(OpDeleteAddress, addr.String(), syscall.ENODEV)
	}
	if _, ok := f.devAddrs[addr]; !ok {
		return kernelErr(OpDeleteAddress, addr.String(), syscall.EADDRNOTAVAIL)
	}
	delete(f.devAddrs, addr)
	return nil
}

// HostAddresses implements Kernel.
func (f *Fake) HostAddresses(ctx context.Context, family proxier.IPFamily) ([]netip.Addr, error) {
	defer f.mu.Unlock()
	if err := f.begin(ctx, OpListHostAddresses, ""); err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range f.host {
		if proxier.FamilyOf(a) == family {
			out = append(out, a)
		}
	}
	return out, nil
}

// ListSet implements Kernel.
func (f *Fake) ListSet(ctx context.Context, name string) (*SetContent, error) {
	defer f.mu.Unlock()
	if err := f.begin(ctx, OpListSet, name); err != nil {
		return nil, err
	}
	set, ok := f.sets[name]
	if !ok {
		return nil, kernelErr(OpListSet, name, syscall.ENOENT)
	}
	return &SetContent{Type: set.spec.Type, Family: set.spec.Family, Entries: sortedEntries(set.entries)}, nil
}

// CreateSet implements Kernel.
func (f *Fake) CreateSet(ctx context.Context, spec SetSpec) error {
	defer f.mu.Unlock()
	if err := f.begin(ctx, OpCreateSet, spec.Name); err != nil {
		return err
	}
	switch spec.Type {
	case HashIP, HashIPPort, HashIPPortIP, HashIPPortNet, BitmapPort:
	default:
		return kernelErr(OpCreateSet, spec.Name, syscall.ENOENT)
	}
	if spec.Name == "" || len(spec.Name) > maxSetName {
		return kernelErr(OpCreateSet, spec.Name, syscall.EINVAL)
	}
	if _, ok := f.sets[spec.Name]; ok {
		return kernelErr(OpCreateSet, spec.Name, syscall.EEXIST)
	}
	f.sets[spec.Name] = &fakeSet{spec: spec, entries: map[SetEntry]struct{}{}}
	return nil
}

// DestroySet implements Kernel.
func (f *Fake) DestroySet(ctx context.Context, name string) error {
	defer f.mu.Unlock()
	if err := f.begin(ctx, OpDestroySet, name); err != nil {
		return err
	}
	if _, ok := f.sets[name]; !ok {
		return nil
	}
	if f.inUse != nil && f.inUse(name) {
		return kernelErr(OpDestroySet, name, syscall.EBUSY)
	}
	delete(f.sets, name)
	return nil
}

// AddEntry implements Kernel.
func (f *Fake) AddEntry(ctx context.Context, name string, e SetEntry) error {
	obj := name + " " + e.String()
	defer f.mu.Unlock()
	if err := f.begin(ctx, OpAddEntry, obj); err != nil {
		return err
	}
	set, ok := f.sets[name]
	if !ok {
		return kernelErr(OpAddEntry, obj, syscall.ENOENT)
	}
	if !e.fits(set.spec.Type, set.spec.Family) {
		return kernelErr(OpAddEntry, obj, syscall.EINVAL)
	}
	if _, ok := set.entries[e]; ok {
		return kernelErr(OpAddEntry, obj, syscall.EEXIST)
	}
	set.entries[e] = struct{}{}
	return nil
}

// DeleteEntry implements Kernel.
func (f *Fake) DeleteEntry(ctx context.Context, name string, e SetEntry) error {
	obj := name + " " + e.String()
	defer f.mu.Unlock()
	if err := f.begin(ctx, OpDeleteEntry, obj); err != nil {
		return err
	}
	set, ok := f.sets[name]
	if !ok {
		return kernelErr(OpDeleteEntry, obj, syscall.ENOENT)
	}
	if _, ok := set.entries[e]; !ok {
		return kernelErr(OpDeleteEntry, obj, syscall.ENOENT)
	}
	delete(set.entries, e)
	return nil
}

// Sysctl implements Kernel.
func (f *Fake) Sysctl(ctx context.Context, name string) (string, error) {
	defer f.mu.Unlock()
	if err := f.begin(ctx, OpGetSysctl, name); err != nil {
		return "", err
	}
	v, ok := f.sysctls[name]
	if !ok {
		return "", kernelErr(OpGetSysctl, name, syscall.ENOENT)
	}
	return v, nil
}

// SetSysctl implements Kernel.
func (f *Fake) SetSysctl(ctx context.Context, name, value string) error {
	defer f.mu.Unlock()
	if err := f.begin(ctx, OpSetSysctl, name); err != nil {
		return err
	}
	if _, ok := f.sysctls[name]; !ok {
		return kernelErr(OpSetSysctl, name, syscall.ENOENT)
	}
	f.sysctls[name] = value
	return nil
}

// KernelVersion implements Kernel.
func (f *Fake) KernelVersion(ctx context.Context) (int, int, error) {
	defer f.mu.Unlock()
	if err := f.begin(ctx, OpKernelVersion, ""); err != nil {
		return 0, 0, err
	}
	return f.version[0], f.version[1], nil
}
