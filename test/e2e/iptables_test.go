package e2e

import (
	"context"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kproxy/kproxy/iptables"
	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/test/netns"
)

// TestIPTables runs the iptables proxier in the node namespace of a real topology, for
// both backends and both families, and proves every behaviour with real connections.
// One topology per backend×family is reused by all scenarios; each scenario syncs the
// services it needs (a partial sync, as a Builder would publish it), which removes the
// previous scenario's.
func TestIPTables(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("e2e: needs root to create network namespaces and program iptables inside them; run `sudo go test ./test/e2e/`")
	}
	for _, b := range []iptables.Backend{iptables.BackendNFT, iptables.BackendLegacy} {
		t.Run(string(b), func(t *testing.T) {
			requireBackend(t, b)
			// The two backends run side by side: their topologies share nothing, and
			// most of a scenario's time is spent waiting for the kernel or a DROP.
			t.Parallel()
			for _, f := range netns.Families {
				t.Run(f.String(), func(t *testing.T) {
					start := time.Now()
					e := newEnv(t, b, f)
					for _, sc := range scenarios {
						t.Run(sc.name, func(t *testing.T) { sc.run(t, e) })
					}
					t.Logf("%s/%s: all scenarios in %v", b, f, time.Since(start).Round(time.Millisecond))
				})
			}
		})
	}
}

type scenario struct {
	name string
	run  func(t *testing.T, e *env)
}

// scenarios run in this order; ForeignRulesUntouched comes last, after every sync, and
// ends with Cleanup.
var scenarios = []scenario{
	{"ClusterIPBalancing", testClusterIPBalancing},
	{"NodePort", testNodePort},
	{"LoadBalancerIP", testLoadBalancerIP},
	{"ExternalIPs", testExternalIPs},
	{"SessionAffinity", testSessionAffinity},
	{"ExternalPolicyLocal", testExternalPolicyLocal},
	{"ExternalPolicyLocalNoLocalEndpoints", testExternalPolicyLocalNoLocal},
	{"InternalPolicyLocal", testInternalPolicyLocal},
	{"NoEndpoints", testNoEndpoints},
	{"LoadBalancerSourceRanges", testSourceRanges},
	{"Hairpin", testHairpin},
	{"UDPEndpointChange", testUDPEndpointChange},
	{"ExternalFlushRepaired", testExternalFlush},
	{"PartialSyncScaleDown", testPartialScaleDown},
	{"RestartAdoptsRules", testRestart},
	{"ForeignRulesUntouched", testForeignRules},
}

// Shorthands for the topology's pods and clients.
func (e *env) local(i int) *netns.Pod  { return e.topo.Node.Pods[i] }
func (e *env) remote(i int) *netns.Pod { return e.topo.Remote.Pods[i] }
func (e *env) client(i int) *netns.Host {
	return e.topo.Clients[i]
}
func (e *env) allPods() []*netns.Pod   { return e.topo.Pods() }
func (e *env) localPods() []*netns.Pod { return e.topo.Node.Pods }

// nodeIPs are the addresses a masqueraded packet can carry: the node's uplink, or its
// pod bridge for a local endpoint.
func (e *env) nodeIPs() []netip.Addr {
	return []netip.Addr{e.topo.Node.IP(e.f), e.topo.Node.BridgeAddrs.IP(e.f)}
}

// testClusterIPBalancing: a pod's connections to a ClusterIP spread over every endpoint,
// local and remote, TCP and UDP, and the endpoints see the pod's own address (but for
// the pod itself, which sees the hairpin masquerade).
func testClusterIPBalancing(t *testing.T, e *env) {
	tcpSvc := e.service(svc{n: 1, name: "balance", endpoints: e.allPods()})
	udpSvc := e.service(svc{n: 1, name: "balance", proto: proxier.ProtocolUDP, endpoints: e.allPods()})
	e.apply(t, tcpSvc, udpSvc)
	from := e.local(0)
	spread(t, from.NS, tcp, e.clusterAddr(tcpSvc), 40, e.allPods(), true, sawPod(from, e.f))
	spread(t, from.NS, udp, e.clusterAddr(udpSvc), 40, e.allPods(), true, sawPod(from, e.f))
}

// testNodePort: an external client reaches every endpoint through the node's address;
// externalTrafficPolicy Cluster masquerades it to the node.
func testNodePort(t *testing.T, e *env) {
	tcpSvc := e.service(svc{n: 2, name: "nodeport", endpoints: e.allPods()}, withNodePort(2))
	udpSvc := e.service(svc{n: 2, name: "nodeport", proto: proxier.ProtocolUDP, endpoints: e.allPods()}, withNodePort(2))
	e.apply(t, tcpSvc, udpSvc)
	from := e.client(0)
	spread(t, from.NS, tcp, e.nodePortAddr(tcpSvc), 40, e.allPods(), true, sawOneOf(e.nodeIPs()...))
	spread(t, from.NS, udp, e.nodePortAddr(udpSvc), 40, e.allPods(), true, sawOneOf(e.nodeIPs()...))
}

// testLoadBalancerIP: an external client routed through the node reaches every
// endpoint through a VIP-mode load-balancer ingress IP.
func testLoadBalancerIP(t *testing.T, e *env) {
	sp := e.service(svc{n: 3, name: "lb", endpoints: e.allPods()}, withLoadBalancer(3))
	e.apply(t, sp)
	spread(t, e.client(0).NS, tcp, e.lbAddr(sp), 40, e.allPods(), true, sawOneOf(e.nodeIPs()...))
}

// testExternalIPs: an external client reaches every endpoint through an external IP.
func testExternalIPs(t *testing.T, e *env) {
	sp := e.service(svc{n: 4, name: "extip", endpoints: e.allPods()}, withExternalIPs(4))
	e.apply(t, sp)
	spread(t, e.client(0).NS, tcp, e.externalAddr(sp), 40, e.allPods(), true, sawOneOf(e.nodeIPs()...))
}

// testSessionAffinity: with ClientIP affinity, repeated connections from one client
// stick to one endpoint, through the ClusterIP and through the NodePort.
func testSessionAffinity(t *testing.T, e *env) {
	sp := e.service(svc{n: 5, name: "affinity", endpoints: e.allPods()}, withNodePort(5), withAffinity)
	e.apply(t, sp)
	for _, c := range []struct {
		from *netns.NS
		addr netip.AddrPort
	}{
		{e.local(0).NS, e.clusterAddr(sp)},
		{e.local(1).NS, e.clusterAddr(sp)},
		{e.client(0).NS, e.nodePortAddr(sp)},
	} {
		seen := spread(t, c.from, tcp, c.addr, 15, e.allPods(), false, nil)
		if len(seen) != 1 {
			t.Errorf("tcp %s -> %s with ClientIP affinity: answered by %s, want one endpoint every time", c.from.Label, c.addr, netns.FormatTally(seen))
		}
	}
}

// testExternalPolicyLocal: with externalTrafficPolicy Local, external traffic reaches
// only this node's endpoints and keeps the client's address; cluster traffic still
// uses every endpoint.
func testExternalPolicyLocal(t *testing.T, e *env) {
	sp := e.service(svc{n: 6, name: "etp-local", endpoints: e.allPods()}, withLoadBalancer(6), withExternalLocal)
	e.apply(t, sp)
	from := e.client(0)
	spread(t, from.NS, tcp, e.nodePortAddr(sp), 30, e.localPods(), true, sawClient(from.IP(e.f)))
	spread(t, from.NS, tcp, e.lbAddr(sp), 30, e.localPods(), true, sawClient(from.IP(e.f)))
	// Traffic from a pod is cluster traffic, also when it is addressed to the
	// load-balancer IP: kube-proxy short-circuits it to every endpoint.
	for _, addr := range []netip.AddrPort{e.clusterAddr(sp), e.lbAddr(sp)} {
		seen := spread(t, e.local(0).NS, tcp, addr, 20, e.allPods(), false, nil)
		if seen[e.remote(0).Label]+seen[e.remote(1).Label] == 0 {
			t.Errorf("pod traffic to %s of an externalTrafficPolicy: Local service never reached a remote endpoint (%s)", addr, netns.FormatTally(seen))
		}
	}
}

// testExternalPolicyLocalNoLocal: with externalTrafficPolicy Local and no endpoint on
// this node, external traffic is dropped (not rejected), while cluster traffic still
// reaches the remote endpoints.
func testExternalPolicyLocalNoLocal(t *testing.T, e *env) {
	remotes := []*netns.Pod{e.remote(0), e.remote(1)}
	sp := e.service(svc{n: 7, name: "etp-local-none", endpoints: remotes}, withLoadBalancer(7), withExternalLocal)
	e.apply(t, sp)
	expectOutcome(t, e.client(0).NS, tcp, e.nodePortAddr(sp), netns.Timeout)
	expectOutcome(t, e.client(0).NS, tcp, e.lbAddr(sp), netns.Timeout)
	// A pod's traffic is short-circuited to the cluster-wide endpoints, whichever
	// address it uses.
	for _, addr := range []netip.AddrPort{e.clusterAddr(sp), e.lbAddr(sp), e.nodePortAddr(sp)} {
		spread(t, e.local(0).NS, tcp, addr, 5, remotes, false, nil)
	}
}

// testInternalPolicyLocal: with internalTrafficPolicy Local a pod reaches only the
// endpoints on its node; with none there, its traffic is dropped.
func testInternalPolicyLocal(t *testing.T, e *env) {
	sp := e.service(svc{n: 8, name: "itp-local", endpoints: e.allPods()}, withInternalLocal)
	none := e.service(svc{n: 9, name: "itp-local-none", endpoints: []*netns.Pod{e.remote(0), e.remote(1)}}, withInternalLocal)
	e.apply(t, sp, none)
	spread(t, e.local(0).NS, tcp, e.clusterAddr(sp), 30, e.localPods(), true, sawPod(e.local(0), e.f))
	expectOutcome(t, e.local(1).NS, tcp, e.clusterAddr(none), netns.Timeout)
}

// testNoEndpoints: a service without endpoints is rejected at once, TCP and UDP, from
// a pod and from outside.
func testNoEndpoints(t *testing.T, e *env) {
	tcpSvc := e.service(svc{n: 10, name: "empty"}, withNodePort(10))
	udpSvc := e.service(svc{n: 10, name: "empty", proto: proxier.ProtocolUDP}, withNodePort(10))
	e.apply(t, tcpSvc, udpSvc)
	expectOutcome(t, e.local(0).NS, tcp, e.clusterAddr(tcpSvc), netns.Refused)
	expectOutcome(t, e.local(0).NS, udp, e.clusterAddr(udpSvc), netns.Refused)
	expectOutcome(t, e.client(0).NS, tcp, e.nodePortAddr(tcpSvc), netns.Refused)
	expectOutcome(t, e.client(0).NS, udp, e.nodePortAddr(udpSvc), netns.Refused)
}

// testSourceRanges: loadBalancerSourceRanges let client-0 in and keep client-1 out (a
// DROP); the NodePort is not restricted by them.
func testSourceRanges(t *testing.T, e *env) {
	allowed := e.client(0)
	ranges := []netip.Prefix{
		netip.PrefixFrom(allowed.V4, 32),
		netip.PrefixFrom(allowed.V6, 128),
	}
	sp := e.service(svc{n: 12, name: "lb-ranges", endpoints: e.allPods()}, withLoadBalancer(12, ranges...))
	e.apply(t, sp)
	spread(t, allowed.NS, tcp, e.lbAddr(sp), 10, e.allPods(), false, nil)
	expectOutcome(t, e.client(1).NS, tcp, e.lbAddr(sp), netns.Timeout)
	spread(t, e.client(1).NS, tcp, e.nodePortAddr(sp), 3, e.allPods(), false, nil)
}

// testHairpin: a pod reaching itself through its service gets an answer, and sees the
// connection masqueraded to the node's bridge address.
func testHairpin(t *testing.T, e *env) {
	self := e.local(0)
	tcpSvc := e.service(svc{n: 13, name: "hairpin", endpoints: []*netns.Pod{self}})
	udpSvc := e.service(svc{n: 13, name: "hairpin", proto: proxier.ProtocolUDP, endpoints: []*netns.Pod{self}})
	e.apply(t, tcpSvc, udpSvc)
	bridge := e.topo.Node.BridgeAddrs.IP(e.f)
	spread(t, self.NS, tcp, e.clusterAddr(tcpSvc), 5, []*netns.Pod{self}, true, sawOneOf(bridge))
	spread(t, self.NS, udp, e.clusterAddr(udpSvc), 5, []*netns.Pod{self}, true, sawOneOf(bridge))
}

// testUDPEndpointChange: when a UDP service gets its first endpoint or moves to another
// one, the next datagram of an existing flow (the same socket) reaches the current
// endpoint: stale conntrack entries are removed, for the ClusterIP and for the NodePort.
func testUDPEndpointChange(t *testing.T, e *env) {
	steps := [][]*netns.Pod{nil, {e.remote(0)}, {e.local(1)}, {e.remote(1)}}
	service := func(eps []*netns.Pod) *proxier.ServicePort {
		return e.service(svc{n: 14, name: "udp-move", proto: proxier.ProtocolUDP, endpoints: eps}, withNodePort(14))
	}
	sp := service(steps[0])
	e.apply(t, sp)
	flows := []*udpFlow{
		openUDPFlow(t, e.local(0).NS, e.clusterAddr(sp)),
		openUDPFlow(t, e.client(0).NS, e.nodePortAddr(sp)),
	}
	for i, eps := range steps {
		if i > 0 {
			e.apply(t, service(eps))
		}
		for _, flow := range flows {
			r := flow.ask(t)
			switch {
			case len(eps) == 0 && r.Outcome != netns.Refused:
				t.Errorf("step %d (no endpoints): %s -> %s got %s (%s), want refused", i, flow.from.Label, flow.addr, r.Outcome, describe(r))
			case len(eps) > 0 && (r.Outcome != netns.OK || r.Server != eps[0].Label):
				t.Errorf("step %d: the flow %s -> %s got %s (%s), want an answer from %s", i, flow.from.Label, flow.addr, r.Outcome, describe(r), eps[0].Label)
			}
		}
	}
}

// testExternalFlush: someone flushes the nat table and deletes kproxy's chains; service
// traffic breaks, and the next full sync repairs it.
func testExternalFlush(t *testing.T, e *env) {
	sp := e.service(svc{n: 15, name: "flush", endpoints: e.allPods()}, withNodePort(15))
	e.apply(t, sp)
	spread(t, e.local(0).NS, tcp, e.clusterAddr(sp), 4, e.allPods(), false, nil)

	ours := regexp.MustCompile(`(?m)^:(KUBE-[^ ]+) `)
	chains := ours.FindAllStringSubmatch(e.save(t, "nat"), -1)
	e.iptables(t, "nat", "-F")
	for _, m := range chains {
		e.iptables(t, "nat", "-X", m[1])
	}
	t.Logf("flushed the nat table and deleted %d KUBE- chains in it", len(chains))
	if r := probe(t, e.local(0).NS, tcp, e.clusterAddr(sp), dropTimeout); r.Outcome == netns.OK {
		t.Errorf("the service still answered after the nat flush (%s); the test shows nothing", r.Server)
	}
	// The flush also removed Docker's and the CNI plugin's nat rules; their owners
	// put them back, as a firewall reload would.
	e.foreign.reinstallNAT(t, e)

	e.sync(t, e.synced, proxier.FullSync())
	spread(t, e.local(0).NS, tcp, e.clusterAddr(sp), 40, e.allPods(), true, nil)
	spread(t, e.client(0).NS, tcp, e.nodePortAddr(sp), 10, e.allPods(), false, sawOneOf(e.nodeIPs()...))
}

// testPartialScaleDown: an endpoint removed by a partial sync stops receiving new
// connections; the others keep receiving them.
func testPartialScaleDown(t *testing.T, e *env) {
	three := []*netns.Pod{e.local(0), e.local(1), e.remote(0)}
	sp := e.service(svc{n: 16, name: "scale", endpoints: three})
	e.apply(t, sp)
	spread(t, e.local(0).NS, tcp, e.clusterAddr(sp), 30, three, true, nil)
	// An established connection to the endpoint about to go.
	gone := e.local(1)
	conn := openTCPTo(t, e.local(0).NS, e.clusterAddr(sp), gone.Label)

	two := []*netns.Pod{e.local(0), e.remote(0)}
	state := proxier.NewState(e.node, e.service(svc{n: 16, name: "scale", endpoints: two}))
	e.sync(t, state, proxier.ChangeSet{Services: map[proxier.ServicePortName]struct{}{sp.Name: {}}})
	spread(t, e.local(0).NS, tcp, e.clusterAddr(sp), 30, two, true, nil)
	spread(t, e.client(0).NS, tcp, e.clusterAddr(sp), 10, two, false, nil)
	// Like kube-proxy, kproxy leaves established TCP connections alone: the pod is
	// still running, only out of rotation.
	if conn != nil {
		rep, err := conn.Exchange(okTimeout)
		t.Logf("tcp local-0 -> %s (established before the scale-down): %v, %v", e.clusterAddr(sp), rep, err)
		if err != nil || rep.Server != gone.Label {
			t.Errorf("the established connection to %s broke after the scale-down: %v, %v (%s)", gone.Label, rep, err, netns.Classify(err))
		}
	}
}

// openTCPTo opens connections to addr until one lands on the pod labelled want and
// returns it (open); nil, with a logged note, if none did in 30 tries.
func openTCPTo(t *testing.T, from *netns.NS, addr netip.AddrPort, want string) *netns.Conn {
	t.Helper()
	for range 30 {
		c, err := from.OpenTCP(t.Context(), addr, okTimeout)
		if err != nil {
			t.Fatalf("tcp %s -> %s: %v (%s)", from.Label, addr, err, netns.Classify(err))
		}
		rep, err := c.Exchange(okTimeout)
		t.Logf("tcp %s -> %s (long-lived): %v, %v", from.Label, addr, rep, err)
		if err == nil && rep.Server == want {
			t.Cleanup(func() { c.Close() })
			return c
		}
		c.Close()
	}
	t.Logf("no connection landed on %s in 30 tries; not checking established connections", want)
	return nil
}

// testRestart: a new proxier process (a restarted kproxy) starts over the rules and
// ipsets of the previous one; its first (full) sync adopts them, and established
// connections and new ones keep working. The rest of the suite uses the new proxier.
func testRestart(t *testing.T, e *env) {
	sp := e.service(svc{n: 17, name: "restart", endpoints: e.allPods()}, withNodePort(17), withAffinity)
	e.apply(t, sp)
	conn, err := e.local(0).OpenTCP(t.Context(), e.clusterAddr(sp), okTimeout)
	if err != nil {
		t.Fatalf("tcp local-0 -> %s: %v", e.clusterAddr(sp), err)
	}
	defer conn.Close()
	before, err := conn.Exchange(okTimeout)
	t.Logf("tcp local-0 -> %s (long-lived, before the restart): %v, %v", e.clusterAddr(sp), before, err)
	if err != nil {
		t.Fatal(err)
	}

	e.p = e.newProxier()
	e.sync(t, e.synced, proxier.FullSync())
	after, err := conn.Exchange(okTimeout)
	t.Logf("tcp local-0 -> %s (long-lived, after the restart): %v, %v", e.clusterAddr(sp), after, err)
	if err != nil || after.Server != before.Server {
		t.Errorf("an established connection did not survive the restart: %v, %v (%s); before it reached %s", after, err, netns.Classify(err), before.Server)
	}
	// The affinity table lives in the kernel, so the client still sticks to its pod.
	seen := spread(t, e.local(0).NS, tcp, e.clusterAddr(sp), 10, e.allPods(), false, nil)
	if len(seen) != 1 || seen[before.Server] == 0 {
		t.Errorf("ClientIP affinity after the restart: answered by %s, want %s every time", netns.FormatTally(seen), before.Server)
	}
	spread(t, e.client(0).NS, tcp, e.nodePortAddr(sp), 5, e.allPods(), false, nil)
}

// testForeignRules: Docker's, the CNI plugin's and the administrator's rules, added
// before the first sync, are byte for byte what they were after every scenario's syncs
// and after Cleanup; Cleanup leaves no KUBE- rule, chain or ipset behind.
func testForeignRules(t *testing.T, e *env) {
	if got := foreignSnapshot(t, e); got != e.foreign.snapshot {
		t.Errorf("foreign rules changed after the syncs:\n%s", lineDiff(e.foreign.snapshot, got))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := e.p.Cleanup(ctx); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
	e.synced = nil
	if got := foreignSnapshot(t, e); got != e.foreign.snapshot {
		t.Errorf("foreign rules changed after Cleanup:\n%s", lineDiff(e.foreign.snapshot, got))
	}
	if left := ownedLeftovers(t, e); len(left) > 0 {
		t.Errorf("Cleanup left %d KUBE- lines behind:\n%s", len(left), strings.Join(left, "\n"))
	}
	out, err := e.topo.Node.Exec(ctx, "ipset", "list", "-n")
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("Cleanup left ipsets behind: %s", s)
	}
	t.Logf("after Cleanup the node holds only the foreign rules:\n%s", e.foreign.snapshot)
}

// lineDiff shows which lines one snapshot has that the other lacks.
func lineDiff(want, got string) string {
	var b strings.Builder
	has := func(text, line string) bool {
		for _, l := range strings.Split(text, "\n") {
			if l == line {
				return true
			}
		}
		return false
	}
	for _, l := range strings.Split(want, "\n") {
		if l != "" && !has(got, l) {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if l != "" && !has(want, l) {
			b.WriteString("+ " + l + "\n")
		}
	}
	if b.Len() == 0 {
		return "(same lines, different order)\nwant:\n" + want + "got:\n" + got
	}
	return b.String()
}
