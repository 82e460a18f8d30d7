package conntrack

import (
	"net/netip"

	"github.com/kproxy/kproxy/proxier"
)

// Cleaned reports whether flows of protocol p are ever stale in a way Cleaners fix:
// UDP and SCTP. TCP connections to a vanished endpoint fail and are retried by the
// client, so their entries are left to expire.
func Cleaned(p proxier.Protocol) bool {
	return p == proxier.ProtocolUDP || p == proxier.ProtocolSCTP
}

// TargetsFor describes every destination of sp in family: its cluster IP, external
// IPs, load-balancer VIPs and node port, all with the same endpoint set.
//
// Like kube-proxy, the endpoint set is every serving endpoint of the Service, whatever
// the traffic policies and topology say: a policy change must not cut flows that are
// still answered, only flows to endpoints that are gone. A nil sp (a deleted Service)
// or one without serving endpoints yields targets with no endpoints, so every flow to
// them is stale. Returns nil for protocols that are not Cleaned.
func TargetsFor(sp *proxier.ServicePort, family proxier.IPFamily) []Target {
	if sp == nil || !Cleaned(sp.Name.Protocol) {
		return nil
	}
	var eps []netip.AddrPort
	for i := range sp.Endpoints {
		ep := &sp.Endpoints[i]
		if (ep.Serving || ep.Ready) && proxier.FamilyOf(ep.Addr) == family {
			eps = append(eps, ep.AddrPort())
		}
	}
	var out []Target
	add := func(ip netip.Addr, port uint16) {
		out = append(out, Target{Protocol: sp.Name.Protocol, IP: ip, Port: port, Endpoints: eps})
	}
	if ip, ok := sp.ClusterIP(family); ok {
		add(ip, sp.Port)
	}
	for _, ip := range sp.ExternalIPs {
		if proxier.FamilyOf(ip) == family {
			add(ip, sp.Port)
		}
	}
	for _, ing := range sp.LoadBalancerIngress {
		if ing.Mode == proxier.IPModeVIP && proxier.FamilyOf(ing.IP) == family {
			add(ing.IP, sp.Port)
		}
	}
	if sp.NodePort != 0 {
		add(netip.Addr{}, sp.NodePort)
	}
	return out
}

// DeletedTargets describes the destinations of a Service port that no longer exists:
// the same destinations as TargetsFor(old, family), none of them with endpoints.
func DeletedTargets(old *proxier.ServicePort, family proxier.IPFamily) []Target {
	ts := TargetsFor(old, family)
	for i := range ts {
		ts[i].Endpoints = nil
	}
	return ts
}
