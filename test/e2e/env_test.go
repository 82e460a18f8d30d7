package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/kproxy/kproxy/iptables"
	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/test/netns"
)

// Ports the pods serve on and the services expose.
const (
	podTCPPort uint16 = 8080
	podUDPPort uint16 = 8053
	svcTCPPort uint16 = 80
	svcUDPPort uint16 = 53
)

// Names of the two nodes as the model knows them.
const (
	nodeName   = "node"
	remoteName = "remote"
)

// env is one topology with the iptables proxier running in its node namespace, for one
// backend and one family. Scenarios run one after the other against it; each one syncs
// the State it needs, which replaces whatever the previous scenario programmed.
type env struct {
	// t is the test the env belongs to (not a scenario's subtest): the proxier logs
	// to it and is cleaned up with it.
	t       *testing.T
	topo    *netns.Topology
	f       netns.Family
	backend iptables.Backend
	node    proxier.Node
	p       proxier.Proxier
	// synced is the State of the last successful sync, to compute partial change sets
	// the way a Builder would.
	synced *proxier.State
	// foreign are the rules other software put in the node before kproxy started.
	foreign *foreignRules
}

// family is the proxier's name for the env's family.
func (e *env) family() iptables.Family {
	if e.f == netns.V6 {
		return iptables.IPv6
	}
	return iptables.IPv4
}

// requireBackend fails the test when the binaries of a backend are missing: as root the
// suite only skips for lack of privileges, never silently for a missing tool.
func requireBackend(t *testing.T, b iptables.Backend) {
	t.Helper()
	for _, prefix := range []string{"iptables", "ip6tables"} {
		for _, suffix := range []string{"", "-save", "-restore"} {
			name := prefix + "-" + string(b) + suffix
			if _, err := exec.LookPath(name); err != nil {
				t.Fatalf("iptables %s backend is not installed (%s missing): apt-get install -y --no-install-recommends iptables ipset conntrack", b, name)
			}
		}
	}
}

// newEnv builds the topology, starts the pods' echo servers, installs foreign rules
// and starts (but does not yet sync) the proxier in the node namespace.
func newEnv(t *testing.T, b iptables.Backend, f netns.Family) *env {
	t.Helper()
	start := time.Now()
	topo := netns.New(t, netns.Spec{LocalPods: 2, RemotePods: 2, Clients: 2})
	if !topo.BridgeNetfilter {
		t.Fatal("bridge netfilter is not available in this kernel (br_netfilter not loaded): service traffic between pods on one bridge would bypass iptables")
	}
	for _, p := range topo.Pods() {
		if _, err := p.ServeTCP(podTCPPort); err != nil {
			t.Fatal(err)
		}
		if _, err := p.ServeUDP(podUDPPort); err != nil {
			t.Fatal(err)
		}
	}
	e := &env{t: t, topo: topo, f: f, backend: b}
	e.node = proxier.Node{
		Name:      nodeName,
		Addresses: topo.Node.IPs(),
		PodCIDRs:  topo.Node.PodCIDR.All(),
	}
	e.foreign = installForeignRules(t, e)

	e.p = e.newProxier()
	t.Logf("topology %s (%s, %s backend) ready in %v: node %s, pods %v, clients %s and %s",
		topo.ID, f, b, time.Since(start).Round(time.Millisecond), topo.Node.IP(f), podIPs(topo, f),
		topo.Clients[0].IP(f), topo.Clients[1].IP(f))
	return e
}

// newProxier starts an iptables proxier for the node namespace, as a kproxy process on
// the node would. It lives as long as the env: it logs to the env's test and its rules
// are removed when that test ends, even when a scenario's subtest started it.
func (e *env) newProxier() proxier.Proxier {
	t, topo := e.t, e.topo
	p, err := iptables.NewNodeProxier(context.Background(), iptables.NodeOptions{
		Backend:  e.backend,
		Netns:    topo.Node.Path(),
		Families: []iptables.Family{e.family()},
		Render: iptables.RenderOptions{
			LocalDetector: iptables.LocalDetector{Mode: iptables.LocalModeClusterCIDR, CIDRs: topo.ClusterCIDR.All()},
		},
		Logger: testr.New(t),
	})
	if err != nil {
		t.Fatalf("start the iptables proxier in %s: %v", topo.Node, err)
	}
	// Runs before the topology's own cleanup (registered earlier), so the rules go
	// before the namespaces do; Cleanup is idempotent, so running it after the
	// ForeignRulesUntouched scenario's is harmless.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := p.Cleanup(ctx); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return p
}

func podIPs(topo *netns.Topology, f netns.Family) []string {
	var out []string
	for _, p := range topo.Pods() {
		out = append(out, p.Label+"="+p.IP(f).String())
	}
	return out
}

// apply syncs a State holding exactly sps, with the change set a Builder would publish:
// every port that was added, removed or replaced since the last sync (a partial sync).
// The first sync is always full.
func (e *env) apply(t *testing.T, sps ...*proxier.ServicePort) {
	t.Helper()
	state := proxier.NewState(e.node, sps...)
	cs := proxier.FullSync()
	if e.synced != nil {
		cs = proxier.ChangeSet{Services: map[proxier.ServicePortName]struct{}{}}
		for _, sp := range sps {
			if old, ok := e.synced.Lookup(sp.Name); !ok || old != sp {
				cs.Services[sp.Name] = struct{}{}
			}
		}
		for _, old := range e.synced.ServicePorts() {
			if _, ok := state.Lookup(old.Name); !ok {
				cs.Services[old.Name] = struct{}{}
			}
		}
	}
	e.sync(t, state, cs)
}

// sync hands state and cs to the proxier and fails the test on an error.
func (e *env) sync(t *testing.T, state *proxier.State, cs proxier.ChangeSet) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	start := time.Now()
	if err := e.p.Sync(ctx, state, cs); err != nil {
		e.synced = nil // the proxier does a full sync next; so do we
		t.Fatalf("sync (full=%v, %d changed): %v", cs.Full, len(cs.Services), err)
	}
	e.synced = state
	t.Logf("synced %d service ports (full=%v, %d changed) in %v", state.Len(), cs.Full, len(cs.Services),
		time.Since(start).Round(time.Millisecond))
}

// svc describes one service port of a scenario. Every scenario uses its own index, so
// addresses, node ports and chain names never collide with an earlier scenario's
// leftovers (conntrack entries, recent lists).
type svc struct {
	n         int
	name      string
	proto     proxier.Protocol
	endpoints []*netns.Pod
}

// service builds the dual-stack model of s: a cluster IP per family and endpoints of
// both families (the proxier of this env must ignore the other family's), with opts
// applied last.
func (e *env) service(s svc, opts ...func(*proxier.ServicePort)) *proxier.ServicePort {
	if s.proto == 0 {
		s.proto = proxier.ProtocolTCP
	}
	port, target := svcTCPPort, podTCPPort
	if s.proto == proxier.ProtocolUDP {
		port, target = svcUDPPort, podUDPPort
	}
	sp := &proxier.ServicePort{
		Name: proxier.ServicePortName{
			ServiceName: proxier.ServiceName{Namespace: "e2e", Name: s.name},
			Port:        "p",
			Protocol:    s.proto,
		},
		ClusterIPs: []netip.Addr{clusterIP(s.n, netns.V4), clusterIP(s.n, netns.V6)},
		Port:       port,
	}
	for _, f := range netns.Families { // sorted by address: IPv4 first, pods in address order
		for _, p := range s.endpoints {
			sp.Endpoints = append(sp.Endpoints, e.endpoint(p, f, target))
		}
	}
	for _, o := range opts {
		o(sp)
	}
	return sp
}

// endpoint is pod p as a ready endpoint of family f.
func (e *env) endpoint(p *netns.Pod, f netns.Family, port uint16) proxier.Endpoint {
	local := p.Node == e.topo.Node
	name := remoteName
	if local {
		name = nodeName
	}
	return proxier.Endpoint{Addr: p.IP(f), Port: port, Ready: true, Serving: true, NodeName: name, Local: local}
}

// Service options.

func withNodePort(n int) func(*proxier.ServicePort) {
	return func(sp *proxier.ServicePort) { sp.NodePort = nodePort(n) }
}

func withLoadBalancer(n int, ranges ...netip.Prefix) func(*proxier.ServicePort) {
	return func(sp *proxier.ServicePort) {
		sp.NodePort = nodePort(n)
		for _, f := range netns.Families {
			sp.LoadBalancerIngress = append(sp.LoadBalancerIngress,
				proxier.LoadBalancerIngress{IP: loadBalancerIP(n, f), Mode: proxier.IPModeVIP})
		}
		sp.LoadBalancerSourceRanges = ranges
	}
}

func withExternalIPs(n int) func(*proxier.ServicePort) {
	return func(sp *proxier.ServicePort) {
		sp.ExternalIPs = []netip.Addr{externalIP(n, netns.V4), externalIP(n, netns.V6)}
	}
}

func withAffinity(sp *proxier.ServicePort) { sp.AffinityTimeout = proxier.DefaultAffinityTimeout }

func withExternalLocal(sp *proxier.ServicePort) { sp.ExternalPolicy = proxier.PolicyLocal }

func withInternalLocal(sp *proxier.ServicePort) { sp.InternalPolicy = proxier.PolicyLocal }

// Service addresses. They exist only as DNAT targets in the node namespace: pods and
// clients route everything through the node, so probes never leave the topology.

func clusterIP(n int, f netns.Family) netip.Addr {
	if f == netns.V6 {
		return netip.MustParseAddr(fmt.Sprintf("fd00:10:96::%x", n))
	}
	return netip.MustParseAddr(fmt.Sprintf("10.96.0.%d", n))
}

func loadBalancerIP(n int, f netns.Family) netip.Addr {
	if f == netns.V6 {
		return netip.MustParseAddr(fmt.Sprintf("fd00:198:19::%x", n))
	}
	return netip.MustParseAddr(fmt.Sprintf("198.19.0.%d", n))
}

func externalIP(n int, f netns.Family) netip.Addr {
	if f == netns.V6 {
		return netip.MustParseAddr(fmt.Sprintf("fd00:198:19:1::%x", n))
	}
	return netip.MustParseAddr(fmt.Sprintf("198.19.1.%d", n))
}

func nodePort(n int) uint16 { return 30000 + uint16(n) }

// Addresses of one service port in the env's family.

func (e *env) clusterAddr(sp *proxier.ServicePort) netip.AddrPort {
	return netip.AddrPortFrom(clusterIP(svcIndex(sp), e.f), sp.Port)
}

func (e *env) nodePortAddr(sp *proxier.ServicePort) netip.AddrPort {
	return e.topo.Node.AddrPort(e.f, sp.NodePort)
}

func (e *env) lbAddr(sp *proxier.ServicePort) netip.AddrPort {
	return netip.AddrPortFrom(loadBalancerIP(svcIndex(sp), e.f), sp.Port)
}

func (e *env) externalAddr(sp *proxier.ServicePort) netip.AddrPort {
	return netip.AddrPortFrom(externalIP(svcIndex(sp), e.f), sp.Port)
}

// svcIndex recovers the scenario index from the IPv4 cluster IP.
func svcIndex(sp *proxier.ServicePort) int {
	b := sp.ClusterIPs[0].As4()
	return int(b[3])
}
