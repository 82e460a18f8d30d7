package iptables

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/kproxy/kproxy/iptables/iptablestest"
	"github.com/kproxy/kproxy/proxier"
)

// scenario is the cluster most flows run against. Endpoints "@node-a" are local.
func scenario() []*proxier.ServicePort {
	return []*proxier.ServicePort{
		svc("ns/web:http", "10.96.0.10,fd00:96::10", nodePort(30080), externalIPs("192.168.99.1"),
			lbVIP("198.51.100.1"), lbProxy("198.51.100.2"),
			endpoints("10.244.1.5:8080@node-a", "10.244.2.6:8080", "[fd00:244:1::5]:8080@node-a", "[fd00:244:2::6]:8080")),
		svc("ns/local:http", "10.96.0.11", nodePort(30081), lbVIP("198.51.100.3"), etpLocal(32000),
			endpoints("10.244.1.6:80@node-a", "10.244.2.7:80")),
		svc("ns/nolocal:http", "10.96.0.12", nodePort(30082), lbVIP("198.51.100.4"), etpLocal(32001),
			endpoints("10.244.2.8:80")),
		svc("ns/empty:http", "10.96.0.13,fd00:96::13", nodePort(30083), externalIPs("192.168.99.3")),
		svc("ns/itp:http", "10.96.0.14", itpLocal(), endpoints("10.244.2.9:80")),
		svc("ns/itp2:http", "10.96.0.24", itpLocal(), endpoints("10.244.1.9:80@node-a", "10.244.2.10:80")),
		svc("ns/sticky:http", "10.96.0.15", affinity(600*time.Second), endpoints("10.244.2.11:80", "10.244.2.12:80")),
		svc("ns/fw:http", "10.96.0.16", lbVIP("198.51.100.5"), sourceRanges("203.0.113.0/24", "192.168.0.0/24"),
			endpoints("10.244.2.13:80")),
		svc("ns/dns:dns", "10.96.0.17", proto(proxier.ProtocolUDP), port(53), endpoints("10.244.2.14:53")),
		svc("ns/sctp:s", "10.96.0.18", proto(proxier.ProtocolSCTP), port(9999), endpoints("10.244.2.15:9999")),
		svc("ns/term:http", "10.96.0.19",
			withEndpoint("10.244.2.16:80", func(e *proxier.Endpoint) { e.Ready, e.Terminating = false, true }),
			withEndpoint("10.244.2.17:80", func(e *proxier.Endpoint) { e.Ready, e.Serving, e.Terminating = false, false, true })),
		svc("ns/topo:http", "10.96.0.20",
			withEndpoint("10.244.2.18:80", func(e *proxier.Endpoint) { e.ZoneHints = []string{"zone-a"} }),
			withEndpoint("10.244.3.19:80", func(e *proxier.Endpoint) { e.ZoneHints = []string{"zone-b"} })),
		svc("ns/hairpin:http", "10.96.0.21", endpoints("10.244.1.30:80@node-a", "10.244.1.31:80@node-a")),
	}
}

// pkt describes a packet: from "ip" (arriving on in, or Local), to "ip:port".
type pkt struct {
	src, dst string
	proto    iptablestest.Protocol // default TCP
	in       string                // default eth0 unless local
	local    bool
	state    iptablestest.ConnState
}

func (p pkt) packet() iptablestest.Packet {
	dst := addrPort(p.dst)
	out := iptablestest.Packet{Source: addr(p.src), Destination: dst.Addr(), DestinationPort: dst.Port(),
		Protocol: p.proto, InInterface: p.in, Local: p.local, State: p.state}
	if out.Protocol == "" {
		out.Protocol = iptablestest.TCP
	}
	if out.InInterface == "" && !p.local {
		out.InInterface = "eth0"
	}
	return out
}

// expect is what a flow must do. Unset fields are not checked.
type expect struct {
	endpoints []string // exactly these DNAT destinations (empty: none)
	verdicts  []iptablestest.Verdict
	masq      string          // "always", "never" or "" (unchecked)
	masqBy    map[string]bool // per DNAT destination
	rejectV6  bool            // REJECT uses icmp6-port-unreachable
}

// flow is one packet through one rendered ruleset.
type flow struct {
	name     string
	opts     func(*RenderOptions)
	services []*proxier.ServicePort // default: scenario()
	node     *proxier.Node
	pkt      pkt
	recent   map[string][]netip.Addr
	want     expect
}

var (
	accept = []iptablestest.Verdict{iptablestest.Accept}
	drop   = []iptablestest.Verdict{iptablestest.Drop}
	reject = []iptablestest.Verdict{iptablestest.Reject}
)

const (
	podLocal = "10.244.1.99" // a pod on node-a
	outside  = "203.0.113.7" // a client outside the cluster
	nodeIP   = "192.168.0.10"
)

func stickyList(ep string) string {
	return affinityListName("ns/sticky:http", proxier.ProtocolTCP, ep)
}

func TestRenderFlows(t *testing.T) {
	flows := []flow{
		// ClusterIP.
		{name: "pod to cluster IP reaches all endpoints unmasqueraded", pkt: pkt{src: podLocal, in: "cni0", dst: "10.96.0.10:80"},
			want: expect{endpoints: []string{"10.244.1.5:8080", "10.244.2.6:8080"}, verdicts: accept, masq: "never"}},
		{name: "outside client to cluster IP is masqueraded", pkt: pkt{src: outside, dst: "10.96.0.10:80"},
			want: expect{endpoints: []string{"10.244.1.5:8080", "10.244.2.6:8080"}, masq: "always"}},
		{name: "node to cluster IP is masqueraded", pkt: pkt{src: nodeIP, local: true, dst: "10.96.0.10:80"},
			want: expect{endpoints: []string{"10.244.1.5:8080", "10.244.2.6:8080"}, masq: "always"}},
		{name: "cluster IP wrong port is not DNATed", pkt: pkt{src: podLocal, dst: "10.96.0.10:81"},
			want: expect{endpoints: nil, verdicts: accept}},
		{name: "cluster IP wrong protocol is not DNATed", pkt: pkt{src: podLocal, dst: "10.96.0.10:80", proto: iptablestest.UDP},
			want: expect{endpoints: nil}},
		{name: "UDP service", pkt: pkt{src: podLocal, dst: "10.96.0.17:53", proto: iptablestest.UDP},
			want: expect{endpoints: []string{"10.244.2.14:53"}, masq: "never"}},
		{name: "SCTP service", pkt: pkt{src: podLocal, dst: "10.96.0.18:9999", proto: iptablestest.SCTP},
			want: expect{endpoints: []string{"10.244.2.15:9999"}}},
		{name: "established packets skip NAT", pkt: pkt{src: podLocal, dst: "10.96.0.10:80", state: iptablestest.StateEstablished},
			want: expect{endpoints: nil, verdicts: accept}},

		// NodePort, external IPs, load balancers.
		{name: "nodeport from outside", pkt: pkt{src: outside, dst: nodeIP + ":30080"},
			want: expect{endpoints: []string{"10.244.1.5:8080", "10.244.2.6:8080"}, masq: "always"}},
		{name: "nodeport on second node address", pkt: pkt{src: outside, dst: "10.0.0.10:30080"},
			want: expect{endpoints: []string{"10.244.1.5:8080", "10.244.2.6:8080"}}},
		{name: "unknown nodeport is accepted without DNAT", pkt: pkt{src: outside, dst: nodeIP + ":30999"},
			want: expect{endpoints: nil, verdicts: accept}},
		{name: "nodeport on a non-local address is not DNATed", pkt: pkt{src: outside, dst: "192.168.0.77:30080"},
			want: expect{endpoints: nil}},
		{name: "external IP from outside", pkt: pkt{src: outside, dst: "192.168.99.1:80"},
			want: expect{endpoints: []string{"10.244.1.5:8080", "10.244.2.6:8080"}, masq: "always"}},
		{name: "external IP from a pod is masqueraded too (Cluster policy)", pkt: pkt{src: podLocal, in: "cni0", dst: "192.168.99.1:80"},
			want: expect{endpoints: []string{"10.244.1.5:8080", "10.244.2.6:8080"}, masq: "always"}},
		{name: "load balancer VIP", pkt: pkt{src: outside, dst: "198.51.100.1:80"},
			want: expect{endpoints: []string{"10.244.1.5:8080", "10.244.2.6:8080"}, masq: "always"}},
		{name: "load balancer in Proxy mode is not short-circuited", pkt: pkt{src: podLocal, dst: "198.51.100.2:80"},
			want: expect{endpoints: nil, verdicts: accept}},

		// externalTrafficPolicy: Local.
		{name: "eTP Local nodeport from outside uses local endpoints, keeps source", pkt: pkt{src: outside, dst: nodeIP + ":30081"},
			want: expect{endpoints: []string{"10.244.1.6:80"}, masq: "never"}},
		{name: "eTP Local VIP from outside", pkt: pkt{src: outside, dst: "198.51.100.3:80"},
			want: expect{endpoints: []string{"10.244.1.6:80"}, masq: "never"}},
		{name: "eTP Local VIP from a local pod is short-circuited to all endpoints", pkt: pkt{src: podLocal, in: "cni0", dst: "198.51.100.3:80"},
			want: expect{endpoints: []string{"10.244.1.6:80", "10.244.2.7:80"}, masq: "never"}},
		{name: "eTP Local VIP from the node is masqueraded to all endpoints", pkt: pkt{src: nodeIP, local: true, dst: "198.51.100.3:80"},
			want: expect{endpoints: []string{"10.244.1.6:80", "10.244.2.7:80"}, masq: "always"}},
		{name: "eTP Local cluster IP still uses all endpoints", pkt: pkt{src: podLocal, dst: "10.96.0.11:80"},
			want: expect{endpoints: []string{"10.244.1.6:80", "10.244.2.7:80"}}},
		{name: "eTP Local without local endpoints drops outside traffic", pkt: pkt{src: outside, dst: nodeIP + ":30082"},
			want: expect{endpoints: nil, verdicts: drop}},
		{name: "eTP Local without local endpoints drops outside VIP traffic", pkt: pkt{src: outside, dst: "198.51.100.4:80"},
			want: expect{endpoints: nil, verdicts: drop}},
		{name: "eTP Local without local endpoints still serves pods", pkt: pkt{src: podLocal, in: "cni0", dst: "198.51.100.4:80"},
			want: expect{endpoints: []string{"10.244.2.8:80"}, verdicts: accept}},
		{name: "eTP Local without local endpoints still serves the node", pkt: pkt{src: nodeIP, local: true, dst: nodeIP + ":30082"},
			want: expect{endpoints: []string{"10.244.2.8:80"}, masq: "always"}},
		{name: "health check node port is accepted", pkt: pkt{src: outside, dst: nodeIP + ":32000"},
			want: expect{endpoints: nil, verdicts: accept}},

		// No endpoints.
		{name: "no endpoints rejects cluster IP", pkt: pkt{src: podLocal, dst: "10.96.0.13:80"},
			want: expect{endpoints: nil, verdicts: reject}},
		{name: "no endpoints rejects cluster IP from the node", pkt: pkt{src: nodeIP, local: true, dst: "10.96.0.13:80"},
			want: expect{verdicts: reject}},
		{name: "no endpoints rejects nodeport", pkt: pkt{src: outside, dst: nodeIP + ":30083"},
			want: expect{verdicts: reject}},
		{name: "no endpoints rejects external IP", pkt: pkt{src: outside, dst: "192.168.99.3:80"},
			want: expect{verdicts: reject}},

		// internalTrafficPolicy: Local.
		{name: "iTP Local without local endpoints drops", pkt: pkt{src: podLocal, dst: "10.96.0.14:80"},
			want: expect{endpoints: nil, verdicts: drop}},
		{name: "iTP Local uses only local endpoints", pkt: pkt{src: podLocal, dst: "10.96.0.24:80"},
			want: expect{endpoints: []string{"10.244.1.9:80"}, verdicts: accept}},

		// Session affinity.
		{name: "affinity: unknown client is balanced", pkt: pkt{src: podLocal, dst: "10.96.0.15:80"},
			recent: map[string][]netip.Addr{},
			want:   expect{endpoints: []string{"10.244.2.11:80", "10.244.2.12:80"}}},
		{name: "affinity: known client sticks to its endpoint", pkt: pkt{src: podLocal, dst: "10.96.0.15:80"},
			recent: map[string][]netip.Addr{stickyList("10.244.2.12:80"): {addr(podLocal)}},
			want:   expect{endpoints: []string{"10.244.2.12:80"}}},
		{name: "affinity: another client's entry does not apply", pkt: pkt{src: podLocal, dst: "10.96.0.15:80"},
			recent: map[string][]netip.Addr{stickyList("10.244.2.12:80"): {addr("10.244.1.100")}},
			want:   expect{endpoints: []string{"10.244.2.11:80", "10.244.2.12:80"}}},

		// loadBalancerSourceRanges.
		{name: "source range allows listed client", pkt: pkt{src: outside, dst: "198.51.100.5:80"},
			want: expect{endpoints: []string{"10.244.2.13:80"}, verdicts: accept}},
		{name: "source range blocks other clients", pkt: pkt{src: "198.18.0.1", dst: "198.51.100.5:80"},
			want: expect{endpoints: nil, verdicts: drop}},
		{name: "source range blocks pods too", pkt: pkt{src: podLocal, in: "cni0", dst: "198.51.100.5:80"},
			want: expect{endpoints: nil, verdicts: drop}},
		{name: "source range allows the VIP itself as source when the node is allowed",
			pkt:  pkt{src: "198.51.100.5", local: true, dst: "198.51.100.5:80"},
			want: expect{endpoints: []string{"10.244.2.13:80"}, verdicts: accept}},
		{name: "cluster IP of a firewalled service is not filtered", pkt: pkt{src: "198.18.0.1", dst: "10.96.0.16:80"},
			want: expect{endpoints: []string{"10.244.2.13:80"}}},

		// Endpoint selection.
		{name: "terminating but serving endpoints are the fallback", pkt: pkt{src: podLocal, dst: "10.96.0.19:80"},
			want: expect{endpoints: []string{"10.244.2.16:80"}}},
		{name: "topology hints keep traffic in the zone", pkt: pkt{src: podLocal, dst: "10.96.0.20:80"},
			want: expect{endpoints: []string{"10.244.2.18:80"}}},

		// Hairpin.
		{name: "pod reaching itself is masqueraded, another endpoint is not",
			pkt: pkt{src: "10.244.1.30", in: "cni0", dst: "10.96.0.21:80"},
			want: expect{endpoints: []string{"10.244.1.30:80", "10.244.1.31:80"},
				masqBy: map[string]bool{"10.244.1.30:80": true, "10.244.1.31:80": false}}},

		// IPv6.
		{name: "IPv6 cluster IP", opts: v6, node: &nodeA, pkt: pkt{src: "fd00:244:1::99", in: "cni0", dst: "[fd00:96::10]:80"},
			want: expect{endpoints: []string{"[fd00:244:1::5]:8080", "[fd00:244:2::6]:8080"}, masq: "never"}},
		{name: "IPv6 from outside is masqueraded", opts: v6, pkt: pkt{src: "2001:db8::7", dst: "[fd00:96::10]:80"},
			want: expect{endpoints: []string{"[fd00:244:1::5]:8080", "[fd00:244:2::6]:8080"}, masq: "always"}},
		{name: "IPv6 nodeport", opts: v6, pkt: pkt{src: "2001:db8::7", dst: "[fd00:192::10]:30080"},
			want: expect{endpoints: []string{"[fd00:244:1::5]:8080", "[fd00:244:2::6]:8080"}}},
		{name: "IPv6 no endpoints rejects with icmp6", opts: v6, pkt: pkt{src: "fd00:244:1::99", dst: "[fd00:96::13]:80"},
			want: expect{verdicts: reject, rejectV6: true}},
		{name: "IPv6 hairpin", opts: v6, pkt: pkt{src: "fd00:244:1::5", in: "cni0", dst: "[fd00:96::10]:80"},
			want: expect{masqBy: map[string]bool{"[fd00:244:1::5]:8080": true, "[fd00:244:2::6]:8080": false}}},

		// nodePortAddresses.
		{name: "nodePortAddresses admits an address inside the CIDR",
			opts: func(o *RenderOptions) { o.NodePortAddresses = []netip.Prefix{prefix("192.168.0.0/24")} },
			pkt:  pkt{src: outside, dst: nodeIP + ":30080"}, want: expect{endpoints: []string{"10.244.1.5:8080", "10.244.2.6:8080"}}},
		{name: "nodePortAddresses excludes an address outside the CIDR",
			opts: func(o *RenderOptions) { o.NodePortAddresses = []netip.Prefix{prefix("192.168.0.0/24")} },
			pkt:  pkt{src: outside, dst: "10.0.0.10:30080"}, want: expect{endpoints: nil}},
		{name: "nodePortAddresses of the other family only means all addresses",
			opts: func(o *RenderOptions) { o.NodePortAddresses = []netip.Prefix{prefix("fd00::/8")} },
			pkt:  pkt{src: outside, dst: "10.0.0.10:30080"}, want: expect{endpoints: []string{"10.244.1.5:8080", "10.244.2.6:8080"}}},
		{name: "primary admits the first address", opts: func(o *RenderOptions) { o.NodePortPrimary = true },
			pkt: pkt{src: outside, dst: nodeIP + ":30080"}, want: expect{endpoints: []string{"10.244.1.5:8080", "10.244.2.6:8080"}}},
		{name: "primary excludes the others", opts: func(o *RenderOptions) { o.NodePortPrimary = true },
			pkt: pkt{src: outside, dst: "10.0.0.10:30080"}, want: expect{endpoints: nil}},

		// Localhost NodePorts.
		{name: "localhost nodeport when enabled", opts: func(o *RenderOptions) { o.LocalhostNodePorts = true },
			pkt:  pkt{src: "127.0.0.1", local: true, dst: "127.0.0.1:30080"},
			want: expect{endpoints: []string{"10.244.1.5:8080", "10.244.2.6:8080"}, masq: "always"}},
		{name: "no localhost nodeport when disabled", pkt: pkt{src: "127.0.0.1", local: true, dst: "127.0.0.1:30080"},
			want: expect{endpoints: nil}},
		{name: "no localhost nodeport when nodePortAddresses leave out loopback",
			opts: func(o *RenderOptions) {
				o.LocalhostNodePorts, o.NodePortAddresses = true, []netip.Prefix{prefix("192.168.0.0/24")}
			},
			pkt: pkt{src: "127.0.0.1", local: true, dst: "127.0.0.1:30080"}, want: expect{endpoints: nil}},
		{name: "localhost nodeport with loopback in nodePortAddresses",
			opts: func(o *RenderOptions) {
				o.LocalhostNodePorts, o.NodePortAddresses = true, []netip.Prefix{prefix("127.0.0.0/8")}
			},
			pkt:  pkt{src: "127.0.0.1", local: true, dst: "127.0.0.1:30080"},
			want: expect{endpoints: []string{"10.244.1.5:8080", "10.244.2.6:8080"}}},

		// Masquerading and local-traffic detection.
		{name: "masqueradeAll masquerades pods", opts: func(o *RenderOptions) { o.MasqueradeAll = true },
			pkt: pkt{src: podLocal, in: "cni0", dst: "10.96.0.10:80"}, want: expect{masq: "always"}},
		{name: "masquerade bit is configurable", opts: func(o *RenderOptions) { o.MasqueradeBit = 5 },
			pkt: pkt{src: outside, dst: "10.96.0.10:80"}, want: expect{masq: "always"}},
		{name: "NodeCIDR: pod of this node is local", opts: detect(LocalDetector{Mode: LocalModeNodeCIDR}),
			pkt: pkt{src: podLocal, in: "cni0", dst: "10.96.0.10:80"}, want: expect{masq: "never"}},
		{name: "NodeCIDR: pod of another node is not", opts: detect(LocalDetector{Mode: LocalModeNodeCIDR}),
			pkt: pkt{src: "10.244.2.99", dst: "10.96.0.10:80"}, want: expect{masq: "always"}},
		{name: "BridgeInterface: traffic from the bridge is local", opts: detect(LocalDetector{Mode: LocalModeBridgeInterface, Interface: "cni0"}),
			pkt: pkt{src: podLocal, in: "cni0", dst: "10.96.0.10:80"}, want: expect{masq: "never"}},
		{name: "BridgeInterface: traffic from elsewhere is not", opts: detect(LocalDetector{Mode: LocalModeBridgeInterface, Interface: "cni0"}),
			pkt: pkt{src: podLocal, in: "eth0", dst: "10.96.0.10:80"}, want: expect{masq: "always"}},
		{name: "InterfaceNamePrefix: veths are local", opts: detect(LocalDetector{Mode: LocalModeInterfaceNamePrefix, Interface: "veth"}),
			pkt: pkt{src: podLocal, in: "veth12ab", dst: "10.96.0.10:80"}, want: expect{masq: "never"}},
		{name: "InterfaceNamePrefix: other interfaces are not", opts: detect(LocalDetector{Mode: LocalModeInterfaceNamePrefix, Interface: "veth"}),
			pkt: pkt{src: podLocal, in: "eth0", dst: "10.96.0.10:80"}, want: expect{masq: "always"}},
		{name: "InterfaceNamePrefix: eTP Local short-circuit from a veth",
			opts: detect(LocalDetector{Mode: LocalModeInterfaceNamePrefix, Interface: "veth"}),
			pkt:  pkt{src: podLocal, in: "veth12ab", dst: "198.51.100.4:80"}, want: expect{endpoints: []string{"10.244.2.8:80"}}},
		{name: "no detection: outside cluster-IP traffic is not marked (as upstream)", opts: detect(LocalDetector{}),
			pkt: pkt{src: outside, dst: "10.96.0.10:80"}, want: expect{masq: "never"}},
		{name: "no detection: eTP Local has no pod short-circuit", opts: detect(LocalDetector{}),
			pkt: pkt{src: podLocal, in: "cni0", dst: "198.51.100.4:80"}, want: expect{endpoints: nil, verdicts: drop}},
		{name: "no detection: node traffic is still short-circuited", opts: detect(LocalDetector{}),
			pkt: pkt{src: nodeIP, local: true, dst: "198.51.100.4:80"}, want: expect{endpoints: []string{"10.244.2.8:80"}}},
	}
	for _, f := range flows {
		t.Run(f.name, func(t *testing.T) { runFlow(t, f) })
	}
}

func v6(o *RenderOptions) { o.Family = IPv6 }

func detect(d LocalDetector) func(*RenderOptions) {
	return func(o *RenderOptions) { o.LocalDetector = d }
}

func runFlow(t *testing.T, f flow) {
	opts := RenderOptions{Family: IPv4, LocalDetector: clusterCIDRs, RandomFully: true, DispatchLeafSize: 4}
	if f.opts != nil {
		f.opts(&opts)
	}
	services := f.services
	if services == nil {
		services = scenario()
	}
	node := nodeA
	if f.node != nil {
		node = *f.node
	}
	rs := Render(proxier.NewState(node, services...), opts)
	tr := newTracer(t, rs, node)
	out := tr.trace(f.pkt.packet(), f.recent)
	checkOutcomes(t, out, f.want)
	if t.Failed() {
		t.Logf("outcomes:\n%s", out)
	}
}

func checkOutcomes(t *testing.T, out iptablestest.Outcomes, want expect) {
	t.Helper()
	if want.endpoints != nil || want.verdicts != nil {
		var got []string
		for _, e := range out.Endpoints() {
			got = append(got, e.String())
		}
		if !slices.Equal(got, want.endpoints) {
			t.Errorf("endpoints = %v, want %v", got, want.endpoints)
		}
	}
	if want.verdicts != nil && !slices.Equal(out.Verdicts(), want.verdicts) {
		t.Errorf("verdicts = %v, want %v", out.Verdicts(), want.verdicts)
	}
	always, sometimes := out.Masqueraded()
	switch want.masq {
	case "always":
		if !always {
			t.Errorf("not always masqueraded")
		}
	case "never":
		if sometimes {
			t.Errorf("masqueraded")
		}
	}
	for ep, m := range want.masqBy {
		seen := false
		for _, o := range out {
			if o.Verdict == iptablestest.Accept && o.DNAT != nil && o.Destination.String() == ep {
				seen = true
				if o.Masqueraded != m {
					t.Errorf("to %s: masqueraded = %v, want %v", ep, o.Masqueraded, m)
				}
			}
		}
		if !seen {
			t.Errorf("no outcome reaches %s", ep)
		}
	}
	if want.rejectV6 {
		for _, o := range out {
			if o.Verdict == iptablestest.Reject && o.RejectWith != "icmp6-port-unreachable" {
				t.Errorf("reject with %q", o.RejectWith)
			}
		}
	}
}

// TestRenderFlowsSmallTrees repeats a few flows with a leaf size of 1, so every
// lookup goes through the deepest dispatch trees (addresses and node ports).
func TestRenderFlowsDeepTrees(t *testing.T) {
	var services []*proxier.ServicePort
	for i := range 300 {
		ip := fmt.Sprintf("10.96.%d.%d", i/250, i%250+1)
		services = append(services, svc(fmt.Sprintf("ns/s%d:p", i), ip, nodePort(uint16(30000+i*7)),
			endpoints(fmt.Sprintf("10.244.2.%d:80", i%250+1))))
	}
	services = append(services, svc("ns/empty:p", "10.96.9.9", nodePort(32767)))
	rs := Render(proxier.NewState(nodeA, services...), RenderOptions{LocalDetector: clusterCIDRs, DispatchLeafSize: 1})
	tr := newTracer(t, rs, nodeA)
	for i := range 300 {
		want := []string{fmt.Sprintf("10.244.2.%d:80", i%250+1)}
		out := tr.trace(pkt{src: podLocal, dst: fmt.Sprintf("10.96.%d.%d:80", i/250, i%250+1)}.packet(), nil)
		checkOutcomes(t, out, expect{endpoints: want, verdicts: accept})
		out = tr.trace(pkt{src: outside, dst: fmt.Sprintf("%s:%d", nodeIP, 30000+i*7)}.packet(), nil)
		checkOutcomes(t, out, expect{endpoints: want, verdicts: accept, masq: "always"})
	}
	checkOutcomes(t, tr.trace(pkt{src: podLocal, dst: "10.96.9.9:80"}.packet(), nil), expect{verdicts: reject})
	checkOutcomes(t, tr.trace(pkt{src: outside, dst: nodeIP + ":32767"}.packet(), nil), expect{verdicts: reject})
	checkOutcomes(t, tr.trace(pkt{src: outside, dst: "10.96.0.251:80"}.packet(), nil), expect{endpoints: nil, verdicts: accept})
	checkOutcomes(t, tr.trace(pkt{src: outside, dst: nodeIP + ":30001"}.packet(), nil), expect{endpoints: nil, verdicts: accept})
}
