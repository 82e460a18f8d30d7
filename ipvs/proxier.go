package ipvs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/kproxy/kproxy/iptables"
	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/proxier/conntrack"
	"github.com/kproxy/kproxy/proxier/metrics"
)

// DefaultDrainCheckInterval is how often draining real servers are checked between
// syncs, kube-proxy's rsCheckDeleteInterval.
const DefaultDrainCheckInterval = time.Minute

// Options configures New.
type Options struct {
	// Kernel programs IPVS, kube-ipvs0 and the ipsets. Required: a *Netlink on a
	// node, a *Fake in tests.
	Kernel Kernel
	// Glue writes the iptables glue (masquerading and filtering). nil leaves iptables
	// alone, for embedders that handle both themselves; IPVS alone neither
	// masquerades nor filters.
	Glue iptables.Kernel
	// Plan says what a State turns into; its Family selects the family this proxier
	// owns.
	Plan PlanOptions
	// Conntrack clears stale UDP and SCTP flows after their endpoints changed. nil
	// skips the cleanup (clients then keep talking to removed endpoints until their
	// flows time out).
	Conntrack conntrack.Cleaner
	// Metrics counts netlink operations and conntrack cleanups and reports services
	// without local endpoints. nil disables them.
	Metrics *metrics.Metrics
	// Logger receives errors, a V(2) summary per sync and V(5) per operation.
	Logger logr.Logger
	// Clock is for tests; the real clock when nil.
	Clock clock.WithTicker
	// DrainCheckInterval is how often draining real servers are checked between
	// syncs (each sync also checks the ones it drained); DefaultDrainCheckInterval
	// when zero, never when negative.
	DrainCheckInterval time.Duration
}

// Proxier is the IPVS backend: a proxier.Proxier that programs one address family.
//
// A full sync (the first one, the periodic resync, the one after a failure) computes
// the whole desired Snapshot, reads back everything the proxier owns in the kernel,
// and applies the Plan between them: that is how a restarted proxier adopts what its
// predecessor left, and how anything changed behind its back is repaired. A partial
// sync recomputes only the service ports in the ChangeSet and plans them against the
// proxier's record of what it last applied, without reading the kernel: a change to
// one endpoint among 10,000 Services costs a couple of netlink operations.
//
// Ownership: the proxier only touches virtual servers that are its own, i.e. not
// inside PlanOptions.ExcludeCIDRs, and either desired, bound to kube-ipvs0, recorded
// in one of its ipsets (cluster, external and load balancer IPs, SCTP node ports;
// a TCP or UDP node port on one of the node's addresses), or created by it earlier.
// kube-proxy instead deletes every virtual server outside its exclude CIDRs; kproxy
// leaves other software's virtual servers alone, also in Cleanup.
type Proxier struct {
	kernel   Kernel
	glue     iptables.Kernel
	plan     PlanOptions
	cleaner  conntrack.Cleaner
	metrics  *metrics.Metrics
	log      logr.Logger
	clock    clock.WithTicker
	interval time.Duration

	mu sync.Mutex
	// env, index and applied describe the last successful sync; applied is nil when
	// the next sync must be a full one.
	env     *planEnv
	index   *desiredIndex
	applied *Snapshot
	drains  *drainer
}

var _ proxier.Proxier = &Proxier{}

// New validates opts, sets the sysctls IPVS mode needs (net/ipv4/vs/conntrack=1,
// expire_nodest_conn=1, expire_quiescent_template=1, conn_reuse_mode=0 on kernels
// from 4.1 up to 5.8, ip_forward=1, and arp_ignore=1/arp_announce=2 with StrictARP)
// and the IPVS timeouts, and starts checking draining real servers until ctx ends.
// Nothing else is programmed until the first Sync.
func New(ctx context.Context, opts Options) (*Proxier, error) {
	if opts.Kernel == nil {
		return nil, &OptionsError{"Kernel", "required"}
	}
	plan := opts.Plan.withDefaults()
	if err := plan.validate(); err != nil {
		return nil, err
	}
	p := &Proxier{
		glue:     opts.Glue,
		plan:     plan,
		cleaner:  opts.Conntrack,
		metrics:  opts.Metrics,
		log:      opts.Logger.WithValues("backend", "ipvs", "family", fmt.Sprintf("IPv%d", plan.Family)),
		clock:    opts.Clock,
		interval: opts.DrainCheckInterval,
		drains:   newDrainer(),
	}
	p.kernel = opts.Kernel
	if p.metrics != nil {
		p.kernel = withMetrics(opts.Kernel, p.metrics.NetlinkOperations)
	}
	if p.clock == nil {
		p.clock = clock.RealClock{}
	}
	if p.interval == 0 {
		p.interval = DefaultDrainCheckInterval
	}
	if p.glue != nil {
		feat, err := p.glue.Features(ctx, iptablesFamily(plan.Family))
		if err != nil {
			return nil, fmt.Errorf("ipvs: iptables features: %w", err)
		}
		p.plan.RandomFully = feat.RandomFully
	}
	if err := p.setup(ctx); err != nil {
		return nil, err
	}
	if p.interval > 0 {
		go p.drainLoop(ctx)
	}
	return p, nil
}

// setup sets sysctls and timeouts, as kube-proxy does when it starts.
func (p *Proxier) setup(ctx context.Context) error {
	ensure := func(name, value string) error {
		if cur, err := p.kernel.Sysctl(ctx, name); err == nil && cur == value {
			return nil
		}
		if err := p.kernel.SetSysctl(ctx, name, value); err != nil {
			return fmt.Errorf("ipvs: set sysctl %s=%s: %w", name, value, err)
		}
		p.log.V(2).Info("Set sysctl", "name", name, "value", value)
		return nil
	}
	if err := ensure("net/ipv4/vs/conntrack", "1"); err != nil {
		return err
	}
	// conn_reuse_mode=0 works around slow connection reuse under load on kernels that
	// have the knob (4.1+) but not the fix that made its default safe (5.9).
	major, minor, err := p.kernel.KernelVersion(ctx)
	switch {
	case err != nil:
		p.log.Error(err, "Cannot read the kernel version; leaving conn_reuse_mode alone")
	case major < 4 || (major == 4 && minor < 1):
		p.log.Info("Kernel too old for net/ipv4/vs/conn_reuse_mode; leaving it alone", "kernel", fmt.Sprintf("%d.%d", major, minor))
	case major < 5 || (major == 5 && minor < 9):
		if err := ensure("net/ipv4/vs/conn_reuse_mode", "0"); err != nil {
			return err
		}
	}
	for _, s := range [][2]string{
		{"net/ipv4/vs/expire_nodest_conn", "1"},
		{"net/ipv4/vs/expire_quiescent_template", "1"},
		{"net/ipv4/ip_forward", "1"},
	} {
		if err := ensure(s[0], s[1]); err != nil {
			return err
		}
	}
	if p.plan.StrictARP {
		if err := ensure("net/ipv4/conf/all/arp_ignore", "1"); err != nil {
			return err
		}
		if err := ensure("net/ipv4/conf/all/arp_announce", "2"); err != nil {
			return err
		}
	}
	if t := (Timeouts{p.plan.TCPTimeout, p.plan.TCPFinTimeout, p.plan.UDPTimeout}); t != (Timeouts{}) {
		if err := p.kernel.SetTimeouts(ctx, t); err != nil {
			// As in kube-proxy: the defaults work, so this is not fatal.
			p.log.Error(err, "Failed to set IPVS timeouts")
		}
	}
	return nil
}

// Sync implements proxier.Proxier.
func (p *Proxier) Sync(ctx context.Context, state *proxier.State, changes proxier.ChangeSet) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if changes.Full || p.applied == nil || !state.Node.Equal(&p.env.node) {
		return p.fullSync(ctx, state)
	}
	if changes.Empty() {
		return nil
	}
	return p.partialSync(ctx, state, changes)
}

// fullSync rebuilds the desired state, reads the kernel and converges.
func (p *Proxier) fullSync(ctx context.Context, state *proxier.State) error {
	start := p.clock.Now()
	previous := p.applied
	p.applied = nil
	family := p.plan.Family
	host, err := p.kernel.HostAddresses(ctx, family)
	if err != nil {
		return fmt.Errorf("ipvs: list host addresses: %w", err)
	}
	opts := p.plan
	opts.HostAddresses = host
	env := newPlanEnv(opts, &state.Node)
	index := newDesiredIndex(state.Len())
	for _, sp := range state.ServicePorts() {
		index.set(sp.Name, env.contribute(sp), nil)
	}
	desired := index.snapshot(env)
	built := p.clock.Now()

	observed, err := ReadSnapshot(ctx, p.kernel, family, func(vs *VirtualServer, s *Snapshot) bool {
		return p.owns(vs, s, desired, previous, env)
	})
	if err != nil {
		return fmt.Errorf("ipvs: read kernel state: %w", err)
	}
	read := p.clock.Now()
	ops := Plan(desired, observed)
	planned := p.clock.Now()
	if err := Apply(ctx, p.kernel, p.glue, ops, p.log); err != nil {
		return err
	}
	applied := p.clock.Now()

	// The kernel now holds desired plus the real servers still draining.
	record := &Snapshot{Family: family, Device: true, Servers: desired.Servers,
		Addresses: desired.Addresses, Sets: desired.Sets, Glue: desired.Glue}
	var draining []drainKey
	for key, o := range observed.Servers {
		vs, extras := settle(desired.Servers[key], o)
		if vs != nil {
			record.Servers[key] = vs
		}
		for _, r := range extras {
			draining = append(draining, drainKey{key, r.Addr})
		}
	}
	p.drains.replace(draining, p.clock.Now())
	p.env, p.index, p.applied = env, index, record
	p.afterApply(ctx, desired, ops)
	p.log.V(2).Info("Full sync done", "servicePorts", state.Len(), "virtualServers", len(desired.Servers),
		"ops", len(ops), "draining", p.drains.len(), "elapsed", p.clock.Since(start),
		"build", built.Sub(start), "read", read.Sub(built), "plan", planned.Sub(read), "apply", applied.Sub(planned))
	return nil
}

// partialSync replans only the changed service ports against the last applied state.
func (p *Proxier) partialSync(ctx context.Context, state *proxier.State, changes proxier.ChangeSet) error {
	start := p.clock.Now()
	t := newTouched()
	for name := range changes.Services {
		var c *contribution
		if sp, ok := state.Lookup(name); ok {
			c = p.env.contribute(sp)
		}
		p.index.set(name, c, t)
	}
	desired := p.index.partial(p.env, t)
	observed := restrict(p.applied, t)
	ops := Plan(desired, observed)
	if err := Apply(ctx, p.kernel, p.glue, ops, p.log); err != nil {
		// The index already holds the new contributions and the record of what is
		// applied is now wrong: start over with a full sync.
		p.applied, p.index = nil, nil
		return err
	}

	now := p.clock.Now()
	for key := range t.servers {
		vs, extras := settle(desired.Servers[key], observed.Servers[key])
		if vs == nil {
			delete(p.applied.Servers, key)
			p.drains.forgetServer(key)
			continue
		}
		p.applied.Servers[key] = vs
		for _, r := range vs.Reals {
			p.drains.forget(drainKey{key, r.Addr})
		}
		for _, r := range extras {
			p.drains.track(drainKey{key, r.Addr}, now)
		}
	}
	for a := range t.addrs {
		if _, ok := desired.Addresses[a]; ok {
			p.applied.Addresses[a] = struct{}{}
		} else {
			delete(p.applied.Addresses, a)
		}
	}
	for name, set := range desired.Sets {
		applied := p.applied.Sets[name]
		k := kindOf(p.plan.Family, name)
		for e := range t.members[k] {
			if _, ok := set.Entries[e]; ok {
				applied.Entries[e] = struct{}{}
			} else {
				delete(applied.Entries, e)
			}
		}
	}
	p.applied.Glue = desired.Glue
	p.afterApply(ctx, desired, ops)
	p.log.V(2).Info("Partial sync done", "servicePorts", len(changes.Services), "ops", len(ops), "elapsed", p.clock.Since(start))
	return nil
}

// settle returns the virtual server the kernel holds for a key after a plan between
// d (desired, nil when deleted) and o (observed, nil when new) succeeded, and the real
// servers of it that are draining: the desired one plus the retired real servers that
// survive retirement, at weight 0 with unknown connection counts.
func settle(d, o *VirtualServer) (*VirtualServer, []RealServer) {
	if d == nil || o == nil {
		return d, nil
	}
	var extras []RealServer
	for _, r := range o.Reals {
		if _, ok := d.Real(r.Addr); ok || !survivesRetire(d.Protocol, r) {
			continue
		}
		extras = append(extras, RealServer{Addr: r.Addr, Weight: 0, ActiveConns: -1, InactiveConns: -1})
	}
	if len(extras) == 0 {
		return d, nil
	}
	m := d.Clone()
	m.Reals = append(m.Reals, extras...)
	sortReals(m.Reals)
	return m, extras
}

// owns decides whether a virtual server found in the kernel is this proxier's.
func (p *Proxier) owns(vs *VirtualServer, s *Snapshot, desired, previous *Snapshot, env *planEnv) bool {
	if slices.ContainsFunc(p.plan.ExcludeCIDRs, func(c netip.Prefix) bool { return c.Contains(vs.Addr) }) {
		return false
	}
	if _, ok := desired.Servers[vs.VSKey]; ok {
		return true
	}
	if _, ok := s.Addresses[vs.Addr]; ok {
		return true
	}
	if previous != nil {
		if _, ok := previous.Servers[vs.VSKey]; ok {
			return true
		}
	}
	f := s.Family
	in := func(k setKind, e SetEntry) bool {
		set, ok := s.Sets[setName(f, k)]
		if !ok {
			return false
		}
		_, ok = set.Entries[e]
		return ok
	}
	ipPort := SetEntry{IP: vs.Addr, Protocol: vs.Protocol, Port: vs.Port}
	for _, k := range []setKind{setClusterIP, setExternalIP, setExternalIPLocal, setLoadBalancer} {
		if in(k, ipPort) {
			return true
		}
	}
	switch vs.Protocol {
	case proxier.ProtocolSCTP:
		return in(setNodePortSCTP, ipPort)
	default:
		all, _ := nodePortSets(vs.Protocol)
		_, onHost := env.host[vs.Addr]
		return onHost && in(all, SetEntry{Port: vs.Port})
	}
}

// afterApply does the housekeeping of a successful sync: conntrack cleanup, an
// immediate check of the real servers just drained, and metrics.
func (p *Proxier) afterApply(ctx context.Context, desired *Snapshot, ops []Op) {
	var drained []VSKey
	udp := map[VSKey]struct{}{}
	for _, op := range ops {
		switch op.Action {
		case DrainRealServer:
			if len(drained) == 0 || drained[len(drained)-1] != op.Key {
				drained = append(drained, op.Key)
			}
		case AddVirtualServer, AddRealServer, DeleteRealServer, DeleteVirtualServer:
			if !gracefulTermination(op.Key.Protocol) {
				udp[op.Key] = struct{}{}
			}
		}
	}
	if len(udp) > 0 {
		p.cleanConntrack(ctx, desired, udp)
	}
	if len(drained) > 0 {
		// Idle real servers go at once, as kube-proxy tries first.
		p.reap(ctx, drained)
	}
	if p.metrics != nil {
		p.metrics.NoLocalEndpoints.WithLabelValues("internal").Set(float64(p.index.noLocalServices[0]))
		p.metrics.NoLocalEndpoints.WithLabelValues("external").Set(float64(p.index.noLocalServices[1]))
	}
}

// cleanConntrack deletes UDP and SCTP flows to the given virtual servers that are not
// answered by one of their current real servers: flows to removed endpoints, and
// flows cached while the service had no endpoint at all.
func (p *Proxier) cleanConntrack(ctx context.Context, desired *Snapshot, keys map[VSKey]struct{}) {
	if p.cleaner == nil {
		return
	}
	targets := make([]conntrack.Target, 0, len(keys))
	for k := range keys {
		t := conntrack.Target{Protocol: k.Protocol, IP: k.Addr, Port: k.Port}
		if vs := desired.Servers[k]; vs != nil {
			for _, r := range vs.Reals {
				if r.Weight > 0 {
					t.Endpoints = append(t.Endpoints, r.Addr)
				}
			}
		}
		targets = append(targets, t)
	}
	n, err := p.cleaner.Clean(ctx, p.plan.Family, targets)
	if p.metrics != nil {
		p.metrics.ConntrackEntriesCleared.Add(float64(n))
		if err != nil {
			p.metrics.ConntrackCleanupFailures.Inc()
		}
	}
	if err != nil {
		p.log.Error(err, "Failed to clear stale conntrack entries", "targets", len(targets), "cleared", n)
	}
}

// reap deletes finished draining real servers of the given virtual servers (all when
// nil). The caller holds p.mu.
func (p *Proxier) reap(ctx context.Context, servers []VSKey) {
	n, err := p.drains.reap(ctx, p.kernel, servers, p.plan.GracefulTimeout, p.clock.Now(), func(vs VSKey, rs netip.AddrPort) {
		if p.applied == nil {
			return
		}
		cur, ok := p.applied.Servers[vs]
		if !ok {
			return
		}
		if i, found := findReal(cur, rs); found {
			c := cur.Clone()
			c.Reals = slices.Delete(c.Reals, i, i+1)
			p.applied.Servers[vs] = c
		}
	})
	if err != nil {
		p.log.Error(err, "Failed to delete drained real servers; retrying later")
	}
	if n > 0 {
		p.log.V(2).Info("Deleted drained real servers", "count", n)
	}
}

// ReapDrained deletes the draining real servers whose connections have ended or
// whose GracefulTimeout has passed. It runs every DrainCheckInterval on its own;
// embedders that disabled that loop call it themselves.
func (p *Proxier) ReapDrained(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drains.len() > 0 {
		p.reap(ctx, nil)
	}
}

// Draining returns the number of real servers currently draining.
func (p *Proxier) Draining() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.drains.len()
}

// drainLoop calls ReapDrained every interval until ctx ends.
func (p *Proxier) drainLoop(ctx context.Context) {
	t := p.clock.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			p.ReapDrained(ctx)
		}
	}
}

// Cleanup implements proxier.Proxier: it deletes the virtual servers this proxier
// owns (see Proxier), unbinds its family's addresses from kube-ipvs0 (and deletes the
// device once no family uses it), removes the glue's jumps and chains, and destroys
// its ipsets. Foreign virtual servers survive. It keeps going after errors and
// returns all of them.
func (p *Proxier) Cleanup(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	family := p.plan.Family
	var errs []error
	fail := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	host, err := p.kernel.HostAddresses(ctx, family)
	fail(err)
	opts := p.plan
	opts.HostAddresses = host
	env := newPlanEnv(opts, &proxier.Node{})
	previous := p.applied
	none := NewSnapshot(family)
	observed, err := ReadSnapshot(ctx, p.kernel, family, func(vs *VirtualServer, s *Snapshot) bool {
		return p.owns(vs, s, none, previous, env)
	})
	fail(err)
	if observed != nil {
		for _, k := range sortedServerKeys(observed.Servers) {
			fail(ignore(p.kernel.DeleteVirtualServer(ctx, k), ErrNotFound))
		}
		for _, a := range sortedAddrs(observed.Addresses) {
			fail(ignore(p.kernel.DeleteAddress(ctx, a), ErrNotFound))
		}
		other := proxier.IPv6
		if family == proxier.IPv6 {
			other = proxier.IPv4
		}
		if rest, exists, err := p.kernel.DeviceAddresses(ctx, other); err != nil {
			fail(err)
		} else if exists && len(rest) == 0 {
			fail(p.kernel.DeleteDevice(ctx))
		}
	}
	if p.glue != nil {
		ifam := iptablesFamily(family)
		for _, j := range Jumps() {
			fail(p.glue.DeleteJump(ctx, ifam, j))
		}
		fail(p.glue.Restore(ctx, ifam, cleanupGlue(), iptables.RestoreOptions{}))
	}
	for _, spec := range Sets(family) {
		fail(ignore(p.kernel.DestroySet(ctx, spec.Name), ErrNotFound))
	}
	p.env, p.index, p.applied = nil, nil, nil
	p.drains = newDrainer()
	return errors.Join(errs...)
}
