package iptables

import (
	"net/netip"
	"slices"

	"github.com/kproxy/kproxy/proxier"
)

// familyView returns the service port as kube-proxy's tracker for one family sees
// it: only that family's cluster IP, external IPs, load-balancer IPs, source ranges
// and endpoints. ok is false when the port has no cluster IP of the family, in which
// case kube-proxy ignores it altogether. sp itself is returned when nothing needs
// filtering.
func familyView(sp *proxier.ServicePort, fam proxier.IPFamily) (view *proxier.ServicePort, ip netip.Addr, ok bool) {
	ip, ok = sp.ClusterIP(fam)
	if !ok {
		return nil, ip, false
	}
	isFam := func(a netip.Addr) bool { return proxier.FamilyOf(a) == fam }
	if len(sp.ClusterIPs) == 1 &&
		!slices.ContainsFunc(sp.ExternalIPs, func(a netip.Addr) bool { return !isFam(a) }) &&
		!slices.ContainsFunc(sp.LoadBalancerIngress, func(i proxier.LoadBalancerIngress) bool { return !isFam(i.IP) }) &&
		!slices.ContainsFunc(sp.LoadBalancerSourceRanges, func(p netip.Prefix) bool { return !isFam(p.Addr()) }) &&
		!slices.ContainsFunc(sp.Endpoints, func(e proxier.Endpoint) bool { return !isFam(e.Addr) }) {
		return sp, ip, true
	}
	v := *sp
	v.ClusterIPs = []netip.Addr{ip}
	v.ExternalIPs = keepMatching(sp.ExternalIPs, isFam)
	v.LoadBalancerIngress = keepMatching(sp.LoadBalancerIngress, func(i proxier.LoadBalancerIngress) bool { return isFam(i.IP) })
	v.LoadBalancerSourceRanges = keepMatching(sp.LoadBalancerSourceRanges, func(p netip.Prefix) bool { return isFam(p.Addr()) })
	v.Endpoints = keepMatching(sp.Endpoints, func(e proxier.Endpoint) bool { return isFam(e.Addr) })
	return &v, ip, true
}

func keepMatching[T any](in []T, keep func(T) bool) []T {
	var out []T
	for _, x := range in {
		if keep(x) {
			out = append(out, x)
		}
	}
	return out
}
