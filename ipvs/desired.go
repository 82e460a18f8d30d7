package ipvs

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/kproxy/kproxy/proxier"
)

// NodePortAddressesPrimary is the nodePortAddresses value that restricts node ports to
// the node's primary address of each family, as in kube-proxy.
const NodePortAddressesPrimary = "primary"

// PlanOptions configures what a proxier.State turns into. Zero values take
// kube-proxy's defaults.
type PlanOptions struct {
	// Family is the address family this proxier programs; IPv4 when zero. Dual-stack
	// nodes run one proxier per family (combine them with proxier.Multi).
	Family proxier.IPFamily
	// Scheduler is the IPVS scheduler of every virtual server, one of Schedulers;
	// DefaultScheduler when empty. kube-proxy's per-Service scheduler annotation is
	// not supported: the model does not carry annotations.
	Scheduler string
	// StrictARP sets arp_ignore=1 and arp_announce=2, so the node does not answer ARP
	// for the service addresses on kube-ipvs0 (needed by MetalLB-style L2 load
	// balancers).
	StrictARP bool
	// ExcludeCIDRs protects virtual servers someone else manages: kproxy never
	// deletes a virtual server whose address is inside one of them.
	ExcludeCIDRs []netip.Prefix
	// TCPTimeout, TCPFinTimeout and UDPTimeout set IPVS's connection timeouts when
	// non-zero (ipvsadm --set).
	TCPTimeout, TCPFinTimeout, UDPTimeout time.Duration
	// NodePortAddresses restricts the addresses node ports listen on: CIDRs (those of
	// other families are ignored), or the single value "primary" for the node's
	// primary address. Empty means every address of the node.
	NodePortAddresses []string
	// MasqueradeAll masquerades all traffic to cluster IPs.
	MasqueradeAll bool
	// MasqueradeBit is the fwmark bit that marks packets for masquerading; 14 when
	// zero (so bit 0 cannot be chosen).
	MasqueradeBit int
	// LocalDetector tells pod traffic from other traffic (see LocalDetector).
	LocalDetector LocalDetector
	// GracefulTimeout bounds how long a removed TCP real server drains before it is
	// deleted with its remaining connections; 15 minutes when zero, kube-proxy's
	// rsGracefulDeletePeriod.
	GracefulTimeout time.Duration

	// HostAddresses are the node's own addresses of Family (Kernel.HostAddresses):
	// where node ports listen, and which service addresses must not be bound to
	// kube-ipvs0 because an interface has them already. The proxier fills it before
	// every sync; callers of Desired set it themselves.
	HostAddresses []netip.Addr
	// RandomFully adds --random-fully to the masquerade rule. New sets it from the
	// glue kernel's features.
	RandomFully bool
}

// DefaultGracefulTimeout is kube-proxy's rsGracefulDeletePeriod.
const DefaultGracefulTimeout = 15 * time.Minute

// withDefaults fills zero values.
func (o PlanOptions) withDefaults() PlanOptions {
	if o.Family == 0 {
		o.Family = proxier.IPv4
	}
	if o.Scheduler == "" {
		o.Scheduler = DefaultScheduler
	}
	if o.MasqueradeBit == 0 {
		o.MasqueradeBit = defaultMasqueradeBit
	}
	if o.GracefulTimeout == 0 {
		o.GracefulTimeout = DefaultGracefulTimeout
	}
	return o
}

// validate reports the first invalid option.
func (o PlanOptions) validate() error {
	if o.Family != proxier.IPv4 && o.Family != proxier.IPv6 {
		return &OptionsError{"Plan.Family", fmt.Sprintf("%d is neither 4 nor 6", o.Family)}
	}
	if !validScheduler(o.Scheduler) {
		return &OptionsError{"Plan.Scheduler", fmt.Sprintf("%q is not one of %s", o.Scheduler, strings.Join(Schedulers, ", "))}
	}
	if o.MasqueradeBit < 0 || o.MasqueradeBit > 31 {
		return &OptionsError{"Plan.MasqueradeBit", fmt.Sprintf("%d is not in [0, 31]", o.MasqueradeBit)}
	}
	if o.GracefulTimeout < 0 || o.TCPTimeout < 0 || o.TCPFinTimeout < 0 || o.UDPTimeout < 0 {
		return &OptionsError{"Plan", "timeouts must not be negative"}
	}
	if _, _, err := parseNodePortAddresses(o.NodePortAddresses); err != nil {
		return err
	}
	for _, p := range append(slices.Clone(o.ExcludeCIDRs), o.LocalDetector.CIDRs...) {
		if !p.IsValid() {
			return &OptionsError{"Plan", "invalid prefix in ExcludeCIDRs or LocalDetector.CIDRs"}
		}
	}
	return nil
}

// parseNodePortAddresses splits nodePortAddresses into CIDRs or "primary".
func parseNodePortAddresses(in []string) (cidrs []netip.Prefix, primary bool, err error) {
	for i, s := range in {
		if s == NodePortAddressesPrimary {
			if len(in) != 1 {
				return nil, false, &OptionsError{"Plan.NodePortAddresses", `"primary" must be the only value`}
			}
			return nil, true, nil
		}
		p, perr := netip.ParsePrefix(s)
		if perr != nil {
			return nil, false, &OptionsError{fmt.Sprintf("Plan.NodePortAddresses[%d]", i), perr.Error()}
		}
		cidrs = append(cidrs, p.Masked())
	}
	return cidrs, false, nil
}

// Desired computes the snapshot a State should produce for opts.Family. It is pure.
//
// Per service port, following kube-proxy's IPVS mode: a virtual server on the cluster
// IP, on each external IP, on each load balancer IP whose ipMode is VIP, and on every
// node port address for the node port; cluster, external and load balancer IPs are
// bound to kube-ipvs0 unless a host interface has them. Real servers are the
// endpoints CategorizeEndpoints selects: the cluster IP uses the internal policy, all
// others the external one, and a Local policy with no local endpoint falls back to the
// cluster endpoints (as kube-proxy does, so pods on this node still reach the service;
// external clients cannot, their answers are not masqueraded). ClientIP affinity
// becomes persistence. Every address, port and endpoint also lands in the ipset that
// the glue matches to masquerade or filter it.
func Desired(state *proxier.State, opts PlanOptions) *Snapshot {
	opts = opts.withDefaults()
	env := newPlanEnv(opts, &state.Node)
	idx := newDesiredIndex(state.Len())
	for _, sp := range state.ServicePorts() {
		idx.set(sp.Name, env.contribute(sp), nil)
	}
	return idx.snapshot(env)
}

// planEnv is everything about the node and options a service port's contribution
// depends on; it changes only with the options, the Node or the host addresses, and
// any change of it makes the proxier rebuild everything.
type planEnv struct {
	family proxier.IPFamily
	// node is a copy, so that keeping the environment does not keep the whole State
	// it came from alive.
	node        proxier.Node
	vsTemplate  VirtualServer
	nodePortIPs []netip.Addr
	host        map[netip.Addr]struct{}
	nodeIP      netip.Addr
	glue        glueParams
}

// newPlanEnv prepares the per-sync environment.
func newPlanEnv(opts PlanOptions, node *proxier.Node) *planEnv {
	f := opts.Family
	env := &planEnv{family: f, node: *node, host: map[netip.Addr]struct{}{}}
	env.vsTemplate = VirtualServer{Scheduler: opts.Scheduler, Netmask: netmaskFor(f)}
	if opts.Scheduler == "mh" {
		env.vsTemplate.Flags |= FlagSourceHash
	}
	var host []netip.Addr
	for _, a := range opts.HostAddresses {
		a = a.Unmap()
		if proxier.FamilyOf(a) == f {
			env.host[a] = struct{}{}
			host = append(host, a)
		}
	}
	slices.SortFunc(host, netip.Addr.Compare)
	host = slices.Compact(host)
	for _, a := range node.Addresses {
		if proxier.FamilyOf(a) == f {
			env.nodeIP = a
			break
		}
	}
	cidrs, primary, _ := parseNodePortAddresses(opts.NodePortAddresses)
	switch {
	case primary:
		if _, ok := env.host[env.nodeIP]; ok {
			env.nodePortIPs = []netip.Addr{env.nodeIP}
		}
	case len(opts.NodePortAddresses) == 0:
		env.nodePortIPs = host
	default:
		for _, a := range host {
			if slices.ContainsFunc(cidrs, func(p netip.Prefix) bool { return p.Contains(a) }) {
				env.nodePortIPs = append(env.nodePortIPs, a)
			}
		}
	}
	env.glue = glueParams{
		family:        f,
		masqueradeAll: opts.MasqueradeAll,
		masqueradeBit: opts.MasqueradeBit,
		local:         opts.LocalDetector,
		randomFully:   opts.RandomFully,
	}
	return env
}

// setMember is one member of one of the proxier's sets.
type setMember struct {
	set   setKind
	entry SetEntry
}

// contribution is everything one service port adds to the desired state. Keys may
// collide between service ports (two Services listing the same external IP, several
// ports of one Service sharing its cluster IP); desiredIndex counts references.
type contribution struct {
	servers []*VirtualServer
	addrs   []netip.Addr
	members []setMember
	// denyFromNode are load balancer virtual servers the node itself must not reach
	// (source ranges that leave the node out).
	denyFromNode []VSKey
	// noLocalInternal and noLocalExternal flag a Local policy without local endpoints
	// while the service has endpoints elsewhere, for the
	// sync_proxy_rules_no_local_endpoints_total metric.
	noLocalInternal, noLocalExternal bool
}

// contribute computes a service port's contribution for the environment's family, or
// nil when the port has nothing in this family (no cluster IP of it, as kube-proxy's
// per-family trackers skip such services).
func (e *planEnv) contribute(sp *proxier.ServicePort) *contribution {
	proto := sp.Name.Protocol
	if proto != proxier.ProtocolTCP && proto != proxier.ProtocolUDP && proto != proxier.ProtocolSCTP {
		return nil
	}
	clusterIP, ok := sp.ClusterIP(e.family)
	if !ok {
		return nil
	}
	c := &contribution{}
	sel := proxier.CategorizeEndpoints(sp, &e.node)
	local := e.reals(sel.Local)
	cluster := e.reals(sel.Cluster)
	internal, external := cluster, cluster
	if sp.InternalPolicyLocal() {
		internal = local
		if len(local) == 0 {
			internal = cluster
			c.noLocalInternal = sel.HasAny
		}
	}
	if sp.ExternalPolicyLocal() {
		external = local
		if len(local) == 0 {
			external = cluster
			c.noLocalExternal = sel.HasAny
		}
	}

	vs := func(addr netip.Addr, port uint16, reals []RealServer) {
		v := e.vsTemplate
		v.VSKey = VSKey{Addr: addr, Protocol: proto, Port: port}
		if sp.SessionAffinity() {
			v.Flags |= FlagPersistent
			v.Timeout = uint32(sp.AffinityTimeout / time.Second)
		}
		v.Reals = reals
		c.servers = append(c.servers, &v)
	}
	member := func(k setKind, entry SetEntry) { c.members = append(c.members, setMember{k, entry}) }
	ipPort := func(a netip.Addr, port uint16) SetEntry { return SetEntry{IP: a, Protocol: proto, Port: port} }
	bind := func(a netip.Addr) {
		if _, isHost := e.host[a]; !isHost {
			c.addrs = append(c.addrs, a)
			member(setIPVSIPs, SetEntry{IP: a})
		}
	}

	// Endpoints on this node reaching their own service are masqueraded (hairpin).
	for i := range sp.Endpoints {
		ep := &sp.Endpoints[i]
		if ep.Local && proxier.FamilyOf(ep.Addr) == e.family {
			member(setLoopBack, SetEntry{IP: ep.Addr, Protocol: proto, Port: ep.Port, IP2: ep.Addr})
		}
	}

	member(setClusterIP, ipPort(clusterIP, sp.Port))
	vs(clusterIP, sp.Port, internal)
	c.addrs = append(c.addrs, clusterIP)
	member(setIPVSIPs, SetEntry{IP: clusterIP})

	for _, ip := range sp.ExternalIPs {
		if proxier.FamilyOf(ip) != e.family {
			continue
		}
		if sp.ExternalPolicyLocal() {
			member(setExternalIPLocal, ipPort(ip, sp.Port))
		} else {
			member(setExternalIP, ipPort(ip, sp.Port))
		}
		vs(ip, sp.Port, external)
		bind(ip)
	}

	var ranges []netip.Prefix
	for _, r := range sp.LoadBalancerSourceRanges {
		if proxier.FamilyOf(r.Addr()) == e.family {
			ranges = append(ranges, r.Masked())
		}
	}
	for _, ing := range sp.LoadBalancerIngress {
		if ing.Mode != proxier.IPModeVIP || proxier.FamilyOf(ing.IP) != e.family {
			continue
		}
		lb := ing.IP
		member(setLoadBalancer, ipPort(lb, sp.Port))
		if sp.ExternalPolicyLocal() {
			member(setLoadBalancerLocal, ipPort(lb, sp.Port))
		}
		if len(ranges) > 0 {
			member(setLoadBalancerFW, ipPort(lb, sp.Port))
			allowNode := false
			for _, r := range ranges {
				member(setLoadBalancerSourceCIDR, SetEntry{IP: lb, Protocol: proto, Port: sp.Port, Net: r})
				allowNode = allowNode || (e.nodeIP.IsValid() && r.Contains(e.nodeIP))
			}
			if allowNode {
				// The node reaches its own load balancer IP with that IP as source.
				member(setLoadBalancerSourceIP, SetEntry{IP: lb, Protocol: proto, Port: sp.Port, IP2: lb})
			} else {
				c.denyFromNode = append(c.denyFromNode, VSKey{Addr: lb, Protocol: proto, Port: sp.Port})
			}
		}
		vs(lb, sp.Port, external)
		bind(lb)
	}

	if sp.NodePort != 0 && len(e.nodePortIPs) > 0 {
		// TCP and UDP node ports are matched by port alone (bitmap:port); SCTP ones by
		// address and port, as kube-proxy does.
		all, local := nodePortSets(proto)
		entries := []SetEntry{{Port: sp.NodePort}}
		if proto == proxier.ProtocolSCTP {
			entries = entries[:0]
			for _, ip := range e.nodePortIPs {
				entries = append(entries, ipPort(ip, sp.NodePort))
			}
		}
		for _, entry := range entries {
			member(all, entry)
			if sp.ExternalPolicyLocal() {
				member(local, entry)
			}
		}
		for _, ip := range e.nodePortIPs {
			vs(ip, sp.NodePort, external)
		}
	}
	if sp.HealthCheckNodePort != 0 {
		member(setHealthCheckNodePort, SetEntry{Port: sp.HealthCheckNodePort})
	}
	return c
}

// reals turns selected endpoints of the environment's family into real servers of
// weight 1, sorted and de-duplicated.
func (e *planEnv) reals(eps []*proxier.Endpoint) []RealServer {
	out := make([]RealServer, 0, len(eps))
	for _, ep := range eps {
		if proxier.FamilyOf(ep.Addr) == e.family {
			out = append(out, RealServer{Addr: ep.AddrPort(), Weight: 1})
		}
	}
	sortReals(out)
	return slices.CompactFunc(out, func(a, b RealServer) bool { return a.Addr == b.Addr })
}

// desiredIndex is the desired state assembled from per-service-port contributions,
// with reference counts where contributions may overlap. The proxier keeps one across
// syncs so that a partial sync replaces only the contributions of the service ports
// that changed and learns exactly which keys that touched.
type desiredIndex struct {
	ports map[proxier.ServicePortName]*contribution
	// servers maps a virtual server key to the service ports claiming it, sorted; the
	// first one's virtual server wins, so collisions resolve deterministically.
	servers map[VSKey][]proxier.ServicePortName
	addrs   map[netip.Addr]int
	members [numSets]map[SetEntry]int
	deny    map[VSKey]int
	// noLocal counts, per Service, the ports flagging a Local policy without local
	// endpoints: [0] internal, [1] external; noLocalServices counts the Services with
	// a non-zero count of each kind, so the metric costs nothing per sync.
	noLocal         map[proxier.ServiceName][2]int
	noLocalServices [2]int
}

// newDesiredIndex returns an empty index sized for about n service ports.
func newDesiredIndex(n int) *desiredIndex {
	x := &desiredIndex{
		ports:   make(map[proxier.ServicePortName]*contribution, n),
		servers: make(map[VSKey][]proxier.ServicePortName, n),
		addrs:   make(map[netip.Addr]int, n),
		deny:    map[VSKey]int{},
		noLocal: map[proxier.ServiceName][2]int{},
	}
	for k := range x.members {
		x.members[k] = map[SetEntry]int{}
	}
	return x
}

// touched collects the keys a change of contributions affected.
type touched struct {
	servers map[VSKey]struct{}
	addrs   map[netip.Addr]struct{}
	members [numSets]map[SetEntry]struct{}
}

func newTouched() *touched {
	t := &touched{servers: map[VSKey]struct{}{}, addrs: map[netip.Addr]struct{}{}}
	for k := range t.members {
		t.members[k] = map[SetEntry]struct{}{}
	}
	return t
}

// set replaces the contribution of one service port (nil removes it) and records the
// keys it touched in t, when t is not nil.
func (x *desiredIndex) set(name proxier.ServicePortName, c *contribution, t *touched) {
	if old := x.ports[name]; old != nil {
		x.apply(name, old, -1, t)
		delete(x.ports, name)
	}
	if c != nil {
		x.ports[name] = c
		x.apply(name, c, +1, t)
	}
}

func (x *desiredIndex) apply(name proxier.ServicePortName, c *contribution, d int, t *touched) {
	for _, vs := range c.servers {
		claims := x.servers[vs.VSKey]
		i, found := slices.BinarySearchFunc(claims, name, proxier.ServicePortName.Compare)
		switch {
		case d > 0 && !found:
			claims = slices.Insert(claims, i, name)
		case d < 0 && found:
			claims = slices.Delete(claims, i, i+1)
		}
		if len(claims) == 0 {
			delete(x.servers, vs.VSKey)
		} else {
			x.servers[vs.VSKey] = claims
		}
		if t != nil {
			t.servers[vs.VSKey] = struct{}{}
		}
	}
	for _, a := range c.addrs {
		count(x.addrs, a, d)
		if t != nil {
			t.addrs[a] = struct{}{}
		}
	}
	for _, m := range c.members {
		count(x.members[m.set], m.entry, d)
		if t != nil {
			t.members[m.set][m.entry] = struct{}{}
		}
	}
	for _, k := range c.denyFromNode {
		count(x.deny, k, d)
	}
	if c.noLocalInternal || c.noLocalExternal {
		old := x.noLocal[name.ServiceName]
		n := old
		if c.noLocalInternal {
			n[0] += d
		}
		if c.noLocalExternal {
			n[1] += d
		}
		for i := range n {
			switch {
			case old[i] == 0 && n[i] > 0:
				x.noLocalServices[i]++
			case old[i] > 0 && n[i] == 0:
				x.noLocalServices[i]--
			}
		}
		if n == [2]int{} {
			delete(x.noLocal, name.ServiceName)
		} else {
			x.noLocal[name.ServiceName] = n
		}
	}
}

// count adds d to m[k], deleting the key at zero.
func count[K comparable](m map[K]int, k K, d int) {
	if n := m[k] + d; n > 0 {
		m[k] = n
	} else {
		delete(m, k)
	}
}

// server returns the desired virtual server for a key, or nil.
func (x *desiredIndex) server(k VSKey) *VirtualServer {
	claims := x.servers[k]
	if len(claims) == 0 {
		return nil
	}
	for _, vs := range x.ports[claims[0]].servers {
		if vs.VSKey == k {
			return vs
		}
	}
	return nil
}

// glue renders the glue for the current contents.
func (x *desiredIndex) glue(env *planEnv) []byte {
	p := env.glue
	for k := range numSets {
		p.nonEmpty[k] = len(x.members[k]) > 0
	}
	for k := range x.deny {
		p.denyFromNode = append(p.denyFromNode, k)
	}
	slices.SortFunc(p.denyFromNode, VSKey.Compare)
	return renderGlue(&p)
}

// snapshot returns the complete desired snapshot.
func (x *desiredIndex) snapshot(env *planEnv) *Snapshot {
	s := &Snapshot{
		Family:    env.family,
		Device:    true,
		Servers:   make(map[VSKey]*VirtualServer, len(x.servers)),
		Addresses: make(map[netip.Addr]struct{}, len(x.addrs)),
		Sets:      make(map[string]*SetState, numSets),
		Glue:      x.glue(env),
	}
	for k := range x.servers {
		s.Servers[k] = x.server(k)
	}
	for a := range x.addrs {
		s.Addresses[a] = struct{}{}
	}
	for _, spec := range Sets(env.family) {
		k := kindOf(env.family, spec.Name)
		entries := make(map[SetEntry]struct{}, len(x.members[k]))
		for e := range x.members[k] {
			entries[e] = struct{}{}
		}
		s.Sets[spec.Name] = &SetState{Spec: spec, Entries: entries}
	}
	return s
}

// partial returns the desired snapshot restricted to the touched keys.
func (x *desiredIndex) partial(env *planEnv, t *touched) *Snapshot {
	s := NewSnapshot(env.family)
	s.Device = true
	s.Glue = x.glue(env)
	for k := range t.servers {
		if vs := x.server(k); vs != nil {
			s.Servers[k] = vs
		}
	}
	for a := range t.addrs {
		if x.addrs[a] > 0 {
			s.Addresses[a] = struct{}{}
		}
	}
	for _, spec := range Sets(env.family) {
		k := kindOf(env.family, spec.Name)
		set := &SetState{Spec: spec, Entries: map[SetEntry]struct{}{}}
		for e := range t.members[k] {
			if x.members[k][e] > 0 {
				set.Entries[e] = struct{}{}
			}
		}
		s.Sets[spec.Name] = set
	}
	return s
}

// restrict returns the part of an observed snapshot that the touched keys cover.
func restrict(obs *Snapshot, t *touched) *Snapshot {
	s := NewSnapshot(obs.Family)
	s.Device = obs.Device
	s.Glue = obs.Glue
	for k := range t.servers {
		if vs, ok := obs.Servers[k]; ok {
			s.Servers[k] = vs
		}
	}
	for a := range t.addrs {
		if _, ok := obs.Addresses[a]; ok {
			s.Addresses[a] = struct{}{}
		}
	}
	for name, oset := range obs.Sets {
		k := kindOf(obs.Family, name)
		set := &SetState{Spec: oset.Spec, Entries: map[SetEntry]struct{}{}}
		if k >= 0 {
			for e := range t.members[k] {
				if _, ok := oset.Entries[e]; ok {
					set.Entries[e] = struct{}{}
				}
			}
		}
		s.Sets[name] = set
	}
	return s
}

// kindOf returns the set kind a name stands for in family f, or -1.
func kindOf(f proxier.IPFamily, name string) setKind {
	for k := range numSets {
		if setName(f, k) == name {
			return k
		}
	}
	return -1
}
