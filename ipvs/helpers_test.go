package ipvs

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/kproxy/kproxy/proxier"
)

// The node the tests run on, with one uplink address per family.
const testNodeName = "node-a"

var (
	testNodeIP  = netip.MustParseAddr("198.18.0.2")
	testNodeIP6 = netip.MustParseAddr("fd00:198:18::2")
	testBridge  = netip.MustParseAddr("10.244.1.1")
)

func testNode() proxier.Node {
	return proxier.Node{Name: testNodeName, Addresses: []netip.Addr{testNodeIP, testNodeIP6}}
}

// hostAddrs are the interface addresses the tests' node has.
func hostAddrs() []netip.Addr { return []netip.Addr{testNodeIP, testBridge, testNodeIP6} }

// spOpt modifies a service port under construction.
type spOpt func(*proxier.ServicePort)

// svcPort returns a TCP service port ns/name:http with one cluster IP per given address.
func svcPort(name string, port uint16, clusterIPs string, opts ...spOpt) *proxier.ServicePort {
	sp := &proxier.ServicePort{
		Name: proxier.ServicePortName{ServiceName: proxier.ServiceName{Namespace: "ns", Name: name},
			Port: "p", Protocol: proxier.ProtocolTCP},
		Port: port,
	}
	for _, ip := range strings.Split(clusterIPs, ",") {
		sp.ClusterIPs = append(sp.ClusterIPs, netip.MustParseAddr(ip))
	}
	for _, o := range opts {
		o(sp)
	}
	slices.SortFunc(sp.Endpoints, func(a, b proxier.Endpoint) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		return int(a.Port) - int(b.Port)
	})
	return sp
}

func proto(p proxier.Protocol) spOpt { return func(sp *proxier.ServicePort) { sp.Name.Protocol = p } }

// eps adds ready endpoints "addr:port" (remote) or "addr:port@local".
func eps(list ...string) spOpt {
	return func(sp *proxier.ServicePort) {
		for _, s := range list {
			local := strings.HasSuffix(s, "@local")
			ap := netip.MustParseAddrPort(strings.TrimSuffix(s, "@local"))
			ep := proxier.Endpoint{Addr: ap.Addr(), Port: ap.Port(), Ready: true, Serving: true, NodeName: "node-b"}
			if local {
				ep.NodeName, ep.Local = testNodeName, true
			}
			sp.Endpoints = append(sp.Endpoints, ep)
		}
	}
}

func nodePort(p uint16) spOpt { return func(sp *proxier.ServicePort) { sp.NodePort = p } }

func externalIPs(ips ...string) spOpt {
	return func(sp *proxier.ServicePort) {
		for _, ip := range ips {
			sp.ExternalIPs = append(sp.ExternalIPs, netip.MustParseAddr(ip))
		}
	}
}

func lbIngress(ip string, mode proxier.IPMode) spOpt {
	return func(sp *proxier.ServicePort) {
		sp.LoadBalancerIngress = append(sp.LoadBalancerIngress, proxier.LoadBalancerIngress{IP: netip.MustParseAddr(ip), Mode: mode})
	}
}

func sourceRanges(cidrs ...string) spOpt {
	return func(sp *proxier.ServicePort) {
		for _, c := range cidrs {
			sp.LoadBalancerSourceRanges = append(sp.LoadBalancerSourceRanges, netip.MustParsePrefix(c))
		}
	}
}

func affinity(d time.Duration) spOpt { return func(sp *proxier.ServicePort) { sp.AffinityTimeout = d } }

func externalLocal(sp *proxier.ServicePort) { sp.ExternalPolicy = proxier.PolicyLocal }
func internalLocal(sp *proxier.ServicePort) { sp.InternalPolicy = proxier.PolicyLocal }

func healthCheckNodePort(p uint16) spOpt {
	return func(sp *proxier.ServicePort) { sp.HealthCheckNodePort = p }
}

// dump renders a snapshot as sorted lines: virtual servers with their real servers,
// bound addresses, and non-empty set members ("set NAME member").
func dump(s *Snapshot) string {
	var lines []string
	for _, k := range sortedServerKeys(s.Servers) {
		vs := s.Servers[k]
		line := "vs " + vs.String()
		if vs.Flags&FlagSourceHash != 0 {
			line += " sh-port"
		}
		lines = append(lines, line)
		for _, r := range vs.Reals {
			lines = append(lines, "  rs "+r.String())
		}
	}
	for _, a := range sortedAddrs(s.Addresses) {
		lines = append(lines, "addr "+a.String())
	}
	for _, name := range sortedKeys(s.Sets) {
		for _, e := range sortedEntries(s.Sets[name].Entries) {
			lines = append(lines, fmt.Sprintf("set %s %s", name, e))
		}
	}
	return strings.Join(lines, "\n")
}

// trimDump normalises an expected dump written as an indented raw string.
func trimDump(s string) string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		l = strings.TrimRight(l, " \t")
		if t := strings.TrimLeft(l, "\t"); strings.HasPrefix(t, "rs ") {
			out = append(out, "  "+t)
		} else {
			out = append(out, t)
		}
	}
	return strings.Join(out, "\n")
}

// bigState returns n TCP services with ten remote endpoints each, cluster IPs from
// 10.96.0.0/12, endpoints from 10.244.0.0/16 and 10.245.0.0/16.
func bigState(n int) *proxier.State {
	ports := make([]*proxier.ServicePort, 0, n)
	for i := range n {
		sp := &proxier.ServicePort{
			Name: proxier.ServicePortName{ServiceName: proxier.ServiceName{Namespace: "scale", Name: fmt.Sprintf("svc-%05d", i)},
				Port: "http", Protocol: proxier.ProtocolTCP},
			ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 96 + byte(i>>16), byte(i >> 8), byte(i)})},
			Port:       80,
		}
		for j := range 10 {
			a := netip.AddrFrom4([4]byte{10, 244 + byte(j/5), byte(i >> 8), byte(i)})
			sp.Endpoints = append(sp.Endpoints, proxier.Endpoint{Addr: a, Port: uint16(8080 + j%5), Ready: true, Serving: true, NodeName: "node-b"})
		}
		slices.SortFunc(sp.Endpoints, func(a, b proxier.Endpoint) int {
			if c := a.Addr.Compare(b.Addr); c != 0 {
				return c
			}
			return int(a.Port) - int(b.Port)
		})
		ports = append(ports, sp)
	}
	return proxier.NewState(testNode(), ports...)
}

// replaceEndpoint returns a copy of state in which the first endpoint of service i is
// replaced by a new address, and the change set naming it.
func replaceEndpoint(state *proxier.State, i int, newAddr netip.Addr) (*proxier.State, proxier.ChangeSet) {
	ports := slices.Clone(state.ServicePorts())
	sp := *ports[i]
	sp.Endpoints = slices.Clone(sp.Endpoints)
	sp.Endpoints[0].Addr = newAddr
	slices.SortFunc(sp.Endpoints, func(a, b proxier.Endpoint) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		return int(a.Port) - int(b.Port)
	})
	ports[i] = &sp
	cs := proxier.ChangeSet{Services: map[proxier.ServicePortName]struct{}{sp.Name: {}}}
	return proxier.NewState(state.Node, ports...), cs
}
