package fuzz

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/kproxy/kproxy/iptables"
	"github.com/kproxy/kproxy/iptables/iptablestest"
	"github.com/kproxy/kproxy/proxier"
)

// Where traced packets come from: a pod on this node (inside the cluster CIDR,
// arriving on the pod bridge) and a client outside the cluster.
var (
	podSource     = map[proxier.IPFamily]netip.Addr{proxier.IPv4: netip.MustParseAddr("10.244.1.99"), proxier.IPv6: netip.MustParseAddr("fd00:244:1::99")}
	outsideSource = map[proxier.IPFamily]netip.Addr{proxier.IPv4: netip.MustParseAddr("203.0.113.7"), proxier.IPv6: netip.MustParseAddr("2001:db8:113::7")}
	clusterCIDRs  = []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:244::/32")}
)

func renderOptions(fam proxier.IPFamily) iptables.RenderOptions {
	return iptables.RenderOptions{Family: fam, RandomFully: true,
		LocalDetector: iptables.LocalDetector{Mode: iptables.LocalModeClusterCIDR, CIDRs: clusterCIDRs}}
}

// rendered is one family's ruleset as the kernel would hold it.
type rendered struct {
	rs   *iptables.Ruleset
	dump *iptablestest.Dump
}

// renderFamily renders st and checks the payload structurally: the validating fake
// restores it and the bootstrap jumps like iptables would, and the tracer parses and
// validates what the fake then saves.
func renderFamily(ctx context.Context, st *proxier.State, fam proxier.IPFamily) (*rendered, error) {
	rs := iptables.Render(st, renderOptions(fam))
	if rs.Family != fam {
		return nil, fmt.Errorf("rendered family %v, asked for %v", rs.Family, fam)
	}
	k := iptables.NewFake(iptables.FakeOptions{})
	if err := k.Restore(ctx, fam, rs.Payload(), iptables.RestoreOptions{}); err != nil {
		return nil, fmt.Errorf("the fake rejects the payload: %w\n%s", err, rs.Payload())
	}
	for _, j := range rs.Jumps {
		if _, err := k.EnsureJump(ctx, fam, j); err != nil {
			return nil, fmt.Errorf("bootstrap jump %s -> %s: %w", j.From, j.To, err)
		}
	}
	text, err := k.Save(ctx, fam)
	if err != nil {
		return nil, err
	}
	dump, err := iptablestest.ParseDump(string(text))
	if err != nil {
		return nil, fmt.Errorf("parsing the saved rules: %w", err)
	}
	if err := dump.Validate(); err != nil {
		return nil, fmt.Errorf("validating the saved rules: %w", err)
	}
	return &rendered{rs: rs, dump: dump}, nil
}

// destKey is a destination a packet is addressed to.
type destKey struct {
	addr  netip.AddrPort
	proto proxier.Protocol
}

// probe is one packet and where the model says it must end.
type probe struct {
	what string
	sp   *proxier.ServicePort
	src  netip.Addr
	in   string
	dst  destKey
	want expectation
}

// expectation is either a set of endpoints (accepted, DNATed to one of them) or a
// verdict without DNAT.
type expectation struct {
	endpoints []netip.AddrPort
	verdict   iptablestest.Verdict
}

func (e expectation) String() string {
	if e.verdict != iptablestest.Accept {
		return string(e.verdict)
	}
	return fmt.Sprint(e.endpoints)
}

// familyPort is sp restricted to one family, the way a per-family proxier sees it.
func familyPort(sp *proxier.ServicePort, fam proxier.IPFamily) (*proxier.ServicePort, netip.Addr, bool) {
	ip, ok := sp.ClusterIP(fam)
	if !ok {
		return nil, ip, false
	}
	is := func(a netip.Addr) bool { return proxier.FamilyOf(a) == fam }
	v := *sp
	v.ClusterIPs = []netip.Addr{ip}
	v.ExternalIPs = nil
	for _, a := range sp.ExternalIPs {
		if is(a) {
			v.ExternalIPs = append(v.ExternalIPs, a)
		}
	}
	v.LoadBalancerIngress = nil
	for _, ing := range sp.LoadBalancerIngress {
		if is(ing.IP) {
			v.LoadBalancerIngress = append(v.LoadBalancerIngress, ing)
		}
	}
	v.LoadBalancerSourceRanges = nil
	for _, r := range sp.LoadBalancerSourceRanges {
		if is(r.Addr()) {
			v.LoadBalancerSourceRanges = append(v.LoadBalancerSourceRanges, r)
		}
	}
	v.Endpoints = nil
	for _, ep := range sp.Endpoints {
		if is(ep.Addr) {
			v.Endpoints = append(v.Endpoints, ep)
		}
	}
	return &v, ip, true
}

// expect turns a selection into the outcome for traffic under one policy: no
// endpoint anywhere rejects, none under the policy drops.
func expect(sel proxier.Selection, local bool) expectation {
	if !sel.HasAny {
		return expectation{verdict: iptablestest.Reject}
	}
	eps := sel.Cluster
	if local {
		eps = sel.Local
	}
	if len(eps) == 0 {
		return expectation{verdict: iptablestest.Drop}
	}
	out := make([]netip.AddrPort, 0, len(eps))
	for _, ep := range eps {
		out = append(out, ep.AddrPort())
	}
	slices.SortFunc(out, netip.AddrPort.Compare)
	return expectation{endpoints: out, verdict: iptablestest.Accept}
}

// probes lists, for every service port of the family, a cluster-IP packet from a
// local pod and a packet from outside to each node port, external IP and VIP load
// balancer IP, with the outcome proxier.CategorizeEndpoints implies. Destinations
// claimed twice (conflicts the API would refuse) are left out: which service wins
// there is unspecified.
func probes(st *proxier.State, fam proxier.IPFamily) []probe {
	var out []probe
	claims := map[destKey]int{}
	var nodeAddrs []netip.Addr
	for _, a := range st.Node.Addresses {
		if proxier.FamilyOf(a) == fam {
			nodeAddrs = append(nodeAddrs, a)
		}
	}
	for _, sp := range st.ServicePorts() {
		v, ip, ok := familyPort(sp, fam)
		if !ok {
			continue
		}
		sel := proxier.CategorizeEndpoints(v, &st.Node)
		proto := sp.Name.Protocol
		add := func(what string, src netip.Addr, in string, dst netip.Addr, port uint16, want expectation) {
			k := destKey{netip.AddrPortFrom(dst, port), proto}
			claims[k]++
			out = append(out, probe{what: what, sp: sp, src: src, in: in, dst: k, want: want})
		}
		add("cluster IP from a local pod", podSource[fam], "cni0", ip, sp.Port, expect(sel, sp.InternalPolicyLocal()))
		ext := expect(sel, sp.ExternalPolicyLocal())
		for _, a := range v.ExternalIPs {
			add("external IP from outside", outsideSource[fam], "eth0", a, sp.Port, ext)
		}
		for _, ing := range v.LoadBalancerIngress {
			if ing.Mode != proxier.IPModeVIP {
				continue
			}
			want := ext
			if sel.HasAny && len(v.LoadBalancerSourceRanges) > 0 &&
				!slices.ContainsFunc(v.LoadBalancerSourceRanges, func(p netip.Prefix) bool { return p.Contains(outsideSource[fam]) }) {
				want = expectation{verdict: iptablestest.Drop}
			}
			add("load balancer IP from outside", outsideSource[fam], "eth0", ing.IP, sp.Port, want)
		}
		for _, a := range nodeAddrs {
			if sp.NodePort != 0 {
				add("node port from outside", outsideSource[fam], "eth0", a, sp.NodePort, ext)
			}
			if sp.HealthCheckNodePort != 0 {
				// Only claimed: a health-check port shares the node's addresses.
				claims[destKey{netip.AddrPortFrom(a, sp.HealthCheckNodePort), proxier.ProtocolTCP}]++
			}
		}
	}
	return slices.DeleteFunc(out, func(p probe) bool { return claims[p.dst] > 1 })
}

// checkTrace traces every probe through r and compares with the model.
func checkTrace(st *proxier.State, fam proxier.IPFamily, r *rendered) error {
	sets := r.rs.TracerSets()
	var errs []error
	for _, p := range probes(st, fam) {
		pkt := iptablestest.Packet{
			Source: p.src, Destination: p.dst.addr.Addr(), DestinationPort: p.dst.addr.Port(),
			Protocol: iptablestest.Protocol(p.dst.proto.String()), InInterface: p.in, LocalAddresses: st.Node.Addresses,
		}
		out, err := iptablestest.Trace(r.dump, pkt, iptablestest.TraceOptions{IPSets: sets})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s %s: tracing: %w", p.sp.Name, p.what, p.dst.addr, err))
			continue
		}
		got := expectation{endpoints: out.Endpoints(), verdict: iptablestest.Accept}
		switch vs := out.Verdicts(); {
		case len(vs) == 1 && vs[0] != iptablestest.Accept && len(got.endpoints) == 0:
			got.verdict = vs[0]
		case len(vs) != 1 || len(got.endpoints) == 0:
			errs = append(errs, fmt.Errorf("%s %s %s -> %s: the tracer found verdicts %v and endpoints %v, the model says %s\n%s",
				p.sp.Name, p.what, p.src, p.dst.addr, vs, got.endpoints, p.want, out))
			continue
		}
		if got.verdict != p.want.verdict || !slices.Equal(got.endpoints, p.want.endpoints) {
			errs = append(errs, fmt.Errorf("%s %s %s -> %s/%v: the rules give %s, the model says %s\n%s",
				p.sp.Name, p.what, p.src, p.dst.addr, p.dst.proto, got, p.want, out))
		}
	}
	return errors.Join(errs...)
}
