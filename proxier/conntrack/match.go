package conntrack

import (
	"net/netip"

	"github.com/kproxy/kproxy/proxier"
)

// IANA protocol numbers, as conntrack reports them.
const (
	protoTCP  uint8 = 6
	protoUDP  uint8 = 17
	protoSCTP uint8 = 132
)

// ProtocolNumber returns the IANA number of p, or 0 for an unknown protocol.
func ProtocolNumber(p proxier.Protocol) uint8 {
	switch p {
	case proxier.ProtocolTCP:
		return protoTCP
	case proxier.ProtocolUDP:
		return protoUDP
	case proxier.ProtocolSCTP:
		return protoSCTP
	}
	return 0
}

// Flow is the part of a conntrack entry that decides whether it is stale: where the
// client sent it, and who answers.
type Flow struct {
	// Protocol is the IANA protocol number.
	Protocol uint8
	// OrigDst is the destination of the original direction. Its port is 0 when the
	// source of the flow could not decode it (netlink only decodes TCP and UDP ports).
	OrigDst netip.AddrPort
	// ReplySrc is the source of the reply direction: the endpoint the flow was
	// translated to, or OrigDst itself when it was not translated.
	ReplySrc netip.AddrPort
}

// translated reports whether the flow was DNATed.
func (f *Flow) translated() bool { return f.ReplySrc.Addr() != f.OrigDst.Addr() }

// destKey identifies a service IP destination.
type destKey struct {
	proto uint8
	ip    netip.Addr
	port  uint16
}

// Matcher decides which flows are stale for a set of targets. Build it once per
// Clean call; lookups are map hits, so a flow table of any size is walked in one pass.
type Matcher struct {
	// byDest holds IP targets: flows to ip:port must come back from one of the
	// endpoints.
	byDest map[destKey]map[netip.AddrPort]struct{}
	// byNodePort holds node port targets, keyed with an invalid ip.
	byNodePort map[destKey]map[netip.AddrPort]struct{}
	// byIP is the fallback for flows whose ports are unknown: the union of the
	// endpoint addresses of every target on that IP and protocol.
	byIP map[destKey]map[netip.Addr]struct{}
}

// NewMatcher indexes targets. Targets of protocols other than UDP and SCTP are
// ignored: TCP flows to a vanished endpoint fail on their own.
func NewMatcher(targets []Target) *Matcher {
	m := &Matcher{
		byDest:     map[destKey]map[netip.AddrPort]struct{}{},
		byNodePort: map[destKey]map[netip.AddrPort]struct{}{},
		byIP:       map[destKey]map[netip.Addr]struct{}{},
	}
	for i := range targets {
		t := &targets[i]
		proto := ProtocolNumber(t.Protocol)
		if proto != protoUDP && proto != protoSCTP {
			continue
		}
		eps := map[netip.AddrPort]struct{}{}
		for _, ep := range t.Endpoints {
			eps[netip.AddrPortFrom(ep.Addr().Unmap(), ep.Port())] = struct{}{}
		}
		if t.NodePort() {
			addAll(m.byNodePort, destKey{proto: proto, port: t.Port}, eps)
			continue
		}
		ip := t.IP.Unmap()
		addAll(m.byDest, destKey{proto: proto, ip: ip, port: t.Port}, eps)
		k := destKey{proto: proto, ip: ip}
		if m.byIP[k] == nil {
			m.byIP[k] = map[netip.Addr]struct{}{}
		}
		for ep := range eps {
			m.byIP[k][ep.Addr()] = struct{}{}
		}
	}
	return m
}

// addAll merges eps into the set at k (two targets may share a destination, e.g. the
// same external IP listed twice).
func addAll(m map[destKey]map[netip.AddrPort]struct{}, k destKey, eps map[netip.AddrPort]struct{}) {
	if cur, ok := m[k]; ok {
		for ep := range eps {
			cur[ep] = struct{}{}
		}
		return
	}
	m[k] = eps
}

// Empty reports whether no flow can be stale, so the flow table need not be read.
func (m *Matcher) Empty() bool {
	return len(m.byDest) == 0 && len(m.byNodePort) == 0
}

// Stale reports whether f is addressed to a target but not answered by one of its
// endpoints.
//
//   - A flow to a service IP and port (cluster, external or load-balancer IP) is stale
//     unless its reply source is an endpoint address and port of that destination.
//     This includes flows that were never translated (reply source = service IP),
//     which is how a verdict cached while the Service had no endpoints is cleared.
//   - A flow that matches no service IP but whose destination port is a node port is
//     stale if it was translated to something other than one of the endpoints.
//     Untranslated flows are left alone: they are unrelated traffic that happens to
//     use a port in the node port range (a pod talking to a remote server, say).
//   - When the flow's ports are unknown (SCTP through netlink), only addresses are
//     compared, against every endpoint of any target on that service IP; node port
//     targets cannot be matched without ports.
func (m *Matcher) Stale(f Flow) bool {
	dst := netip.AddrPortFrom(f.OrigDst.Addr().Unmap(), f.OrigDst.Port())
	reply := netip.AddrPortFrom(f.ReplySrc.Addr().Unmap(), f.ReplySrc.Port())
	f = Flow{Protocol: f.Protocol, OrigDst: dst, ReplySrc: reply}
	if f.OrigDst.Port() == 0 && f.Protocol != protoUDP {
		eps, ok := m.byIP[destKey{proto: f.Protocol, ip: dst.Addr()}]
		if !ok {
			return false
		}
		_, legit := eps[reply.Addr()]
		return !legit
	}
	if eps, ok := m.byDest[destKey{proto: f.Protocol, ip: dst.Addr(), port: dst.Port()}]; ok {
		_, legit := eps[reply]
		return !legit
	}
	if eps, ok := m.byNodePort[destKey{proto: f.Protocol, port: dst.Port()}]; ok && f.translated() {
		_, legit := eps[reply]
		return !legit
	}
	return false
}
