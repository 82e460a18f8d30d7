package iptables

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kproxy/kproxy/iptables/iptablestest"
	"github.com/kproxy/kproxy/proxier"
)

// Fixtures shared by the renderer tests: node-a (192.168.0.10, fd00:192::10) in
// zone-a with pod CIDR 10.244.1.0/24 in cluster CIDR 10.244.0.0/16.
var (
	nodeA = proxier.Node{
		Name:      "node-a",
		Zone:      "zone-a",
		Addresses: []netip.Addr{addr("192.168.0.10"), addr("10.0.0.10"), addr("fd00:192::10")},
		PodCIDRs:  []netip.Prefix{prefix("10.244.1.0/24"), prefix("fd00:244:1::/64")},
	}
	clusterCIDRs = LocalDetector{Mode: LocalModeClusterCIDR, CIDRs: []netip.Prefix{prefix("10.244.0.0/16"), prefix("fd00:244::/32")}}
)

func addr(s string) netip.Addr     { return netip.MustParseAddr(s) }
func prefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addrPort(s string) netip.AddrPort {
	return netip.MustParseAddrPort(s)
}

// svcOpt adjusts a test service port.
type svcOpt func(*proxier.ServicePort)

// svc builds a TCP service port "ns/name:p" with cluster IP ip, port 80.
func svc(name, ip string, opts ...svcOpt) *proxier.ServicePort {
	ns, n, _ := strings.Cut(name, "/")
	n, port, _ := strings.Cut(n, ":")
	sp := &proxier.ServicePort{
		Name: proxier.ServicePortName{ServiceName: proxier.ServiceName{Namespace: ns, Name: n}, Port: port,
			Protocol: proxier.ProtocolTCP},
		Port: 80,
	}
	for _, a := range strings.Split(ip, ",") {
		sp.ClusterIPs = append(sp.ClusterIPs, addr(a))
	}
	for _, o := range opts {
		o(sp)
	}
	return sp
}

func proto(p proxier.Protocol) svcOpt {
	return func(sp *proxier.ServicePort) { sp.Name.Protocol = p }
}
func port(p uint16) svcOpt     { return func(sp *proxier.ServicePort) { sp.Port = p } }
func nodePort(p uint16) svcOpt { return func(sp *proxier.ServicePort) { sp.NodePort = p } }
func externalIPs(ips ...string) svcOpt {
	return func(sp *proxier.ServicePort) {
		for _, ip := range ips {
			sp.ExternalIPs = append(sp.ExternalIPs, addr(ip))
		}
	}
}
func lbVIP(ips ...string) svcOpt {
	return func(sp *proxier.ServicePort) {
		for _, ip := range ips {
			sp.LoadBalancerIngress = append(sp.LoadBalancerIngress, proxier.LoadBalancerIngress{IP: addr(ip)})
		}
	}
}
func lbProxy(ip string) svcOpt {
	return func(sp *proxier.ServicePort) {
		sp.LoadBalancerIngress = append(sp.LoadBalancerIngress, proxier.LoadBalancerIngress{IP: addr(ip), Mode: proxier.IPModeProxy})
	}
}
func sourceRanges(cidrs ...string) svcOpt {
	return func(sp *proxier.ServicePort) {
		for _, c := range cidrs {
			sp.LoadBalancerSourceRanges = append(sp.LoadBalancerSourceRanges, prefix(c))
		}
	}
}
func affinity(d time.Duration) svcOpt {
	return func(sp *proxier.ServicePort) { sp.AffinityTimeout = d }
}
func etpLocal(hc uint16) svcOpt {
	return func(sp *proxier.ServicePort) { sp.ExternalPolicy, sp.HealthCheckNodePort = proxier.PolicyLocal, hc }
}
func itpLocal() svcOpt {
	return func(sp *proxier.ServicePort) { sp.InternalPolicy = proxier.PolicyLocal }
}

// endpoints adds ready endpoints "ip:port@node" (node defaults to node-b).
func endpoints(eps ...string) svcOpt {
	return func(sp *proxier.ServicePort) {
		for _, e := range eps {
			sp.Endpoints = append(sp.Endpoints, endpoint(e))
		}
		slices.SortFunc(sp.Endpoints, func(a, b proxier.Endpoint) int { return a.AddrPort().Compare(b.AddrPort()) })
	}
}

// withEndpoint adds one endpoint adjusted by fn.
func withEndpoint(e string, fn func(*proxier.Endpoint)) svcOpt {
	return func(sp *proxier.ServicePort) {
		ep := endpoint(e)
		fn(&ep)
		sp.Endpoints = append(sp.Endpoints, ep)
		slices.SortFunc(sp.Endpoints, func(a, b proxier.Endpoint) int { return a.AddrPort().Compare(b.AddrPort()) })
	}
}

func endpoint(e string) proxier.Endpoint {
	ap, node, _ := strings.Cut(e, "@")
	if node == "" {
		node = "node-b"
	}
	return proxier.Endpoint{Addr: addrPort(ap).Addr(), Port: addrPort(ap).Port(), Ready: true, Serving: true,
		NodeName: node, Local: node == nodeA.Name}
}

// builtinChains are the kernel's chains per table, for the trace header.
var builtinChainsFor = map[Table][]Chain{
	TableNAT:    {ChainPrerouting, ChainInput, ChainOutput, ChainPostrouting},
	TableFilter: {ChainInput, ChainForward, ChainOutput},
	TableMangle: {ChainPrerouting, ChainInput, ChainForward, ChainOutput, ChainPostrouting},
}

// traceDump renders a ruleset the way iptables-save would show it after kproxy
// installed it in an empty namespace: built-in chains with the bootstrap jumps
// (prepended one after the other, so reversed), then the ruleset's chains.
func traceDump(rs *Ruleset) string {
	var b strings.Builder
	for _, tr := range rs.Tables {
		b.WriteString("*" + string(tr.Table) + "\n")
		for _, c := range builtinChainsFor[tr.Table] {
			b.WriteString(":" + string(c) + " ACCEPT [0:0]\n")
		}
		for _, c := range tr.Chains {
			b.WriteString(":" + string(c.Name) + " - [0:0]\n")
		}
		for i := len(rs.Jumps) - 1; i >= 0; i-- {
			if j := rs.Jumps[i]; j.Table == tr.Table {
				b.WriteString("-A " + string(j.From) + " " + jumpText(j) + "\n")
			}
		}
		for _, c := range tr.Chains {
			for _, r := range c.Rules {
				b.WriteString("-A " + string(c.Name) + " " + r + "\n")
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// jumpText is a Jump in iptables-save form.
func jumpText(j Jump) string {
	var b []byte
	for _, w := range j.Match {
		b = append(b, w...)
		b = append(b, ' ')
	}
	if j.Comment != "" {
		b = append(b, "-m comment --comment "...)
		b = appendSaveString(b, j.Comment)
		b = append(b, ' ')
	}
	return string(b) + "-j " + string(j.To)
}

// tracer traces packets through one rendered ruleset.
type tracer struct {
	t    *testing.T
	rs   *Ruleset
	dump *iptablestest.Dump
	node proxier.Node
}

func newTracer(t *testing.T, rs *Ruleset, node proxier.Node) *tracer {
	t.Helper()
	text := traceDump(rs)
	dump, err := iptablestest.ParseDump(text)
	if err != nil {
		t.Fatalf("ParseDump: %v\n%s", err, text)
	}
	if err := dump.Validate(); err != nil {
		t.Fatalf("Validate: %v\n%s", err, text)
	}
	return &tracer{t: t, rs: rs, dump: dump, node: node}
}

// trace runs one packet; the node's addresses are its local addresses.
func (tr *tracer) trace(p iptablestest.Packet, recent map[string][]netip.Addr) iptablestest.Outcomes {
	tr.t.Helper()
	if p.LocalAddresses == nil {
		p.LocalAddresses = tr.node.Addresses
	}
	out, err := iptablestest.Trace(tr.dump, p, iptablestest.TraceOptions{IPSets: tr.rs.TracerSets(), Recent: recent})
	if err != nil {
		tr.t.Fatalf("Trace %+v: %v", p, err)
	}
	return out
}
