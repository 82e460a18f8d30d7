package iptablestest

import (
	"fmt"
	"net/netip"
)

// Protocol is the layer-4 protocol of a traced packet.
type Protocol string

// Protocols the tracer can carry through a ruleset. Port-based matches
// only ever match TCP, UDP and SCTP packets.
const (
	TCP    Protocol = "tcp"
	UDP    Protocol = "udp"
	SCTP   Protocol = "sctp"
	ICMP   Protocol = "icmp"
	ICMPv6 Protocol = "icmpv6"
)

// number returns the IP protocol number, as -p compares them.
func (p Protocol) number() (uint8, bool) {
	switch p {
	case TCP:
		return 6, true
	case UDP:
		return 17, true
	case SCTP:
		return 132, true
	case ICMP:
		return 1, true
	case ICMPv6:
		return 58, true
	}
	return 0, false
}

func (p Protocol) hasPorts() bool { return p == TCP || p == UDP || p == SCTP }

// ConnState is the conntrack state of the traced packet's connection. The
// zero value is StateNew, the first packet of a connection, which is the
// only kind of packet that traverses the nat table.
type ConnState int

// Connection states; they decide -m conntrack --ctstate / -m state results.
const (
	StateNew ConnState = iota
	StateEstablished
	StateRelated
)

// String implements fmt.Stringer with iptables' spelling.
func (s ConnState) String() string {
	switch s {
	case StateNew:
		return "NEW"
	case StateEstablished:
		return "ESTABLISHED"
	case StateRelated:
		return "RELATED"
	}
	return fmt.Sprintf("ConnState(%d)", int(s))
}

// Packet describes the packet to trace together with the facts about the
// node that decide matches (local addresses). Fields left empty that a rule
// needs (SourcePort, OutInterface) make the tracer explore both outcomes of
// that rule rather than guess.
type Packet struct {
	// Source and Destination are required and must be of the same family.
	Source, Destination netip.Addr
	// Protocol is required. ICMP on an IPv6 packet is read as ICMPv6.
	Protocol Protocol
	// DestinationPort is required for TCP, UDP and SCTP.
	DestinationPort uint16
	// SourcePort is optional; 0 means unknown.
	SourcePort uint16
	// InInterface is the interface an arriving packet came in on. It is
	// ignored for locally generated packets, which have none.
	InInterface string
	// OutInterface is optional; empty means unknown once the packet is
	// routed (locally delivered packets use "lo" as the kernel does).
	OutInterface string
	// PhysInInterface and PhysOutInterface are the bridge ports for
	// -m physdev; empty means the packet is not bridged.
	PhysInInterface, PhysOutInterface string
	// Local marks a locally generated packet (nat/filter OUTPUT path);
	// otherwise the packet arrives from InInterface (PREROUTING path).
	Local bool
	// LocalAddresses are the node's addresses, deciding addrtype LOCAL and
	// whether a packet is delivered locally or forwarded. Loopback
	// addresses are always local.
	LocalAddresses []netip.Addr
	// State is the connection's conntrack state; the zero value is NEW.
	State ConnState
	// Mark is the packet mark on entry (normally 0).
	Mark uint32
}

// normalized validates p and returns a copy with ICMP on IPv6 turned into
// ICMPv6, so rules never see an impossible packet.
func (p Packet) normalized() (Packet, error) {
	if !p.Source.IsValid() || !p.Destination.IsValid() {
		return p, fmt.Errorf("%w: source and destination are required", ErrInvalidPacket)
	}
	if p.Source.Zone() != "" || p.Destination.Zone() != "" {
		return p, fmt.Errorf("%w: addresses with zones are not supported", ErrInvalidPacket)
	}
	if familyOf(p.Source) != familyOf(p.Destination) {
		return p, fmt.Errorf("%w: source %s and destination %s are of different families", ErrInvalidPacket, p.Source, p.Destination)
	}
	if p.Protocol == ICMP && p.Destination.Is6() {
		p.Protocol = ICMPv6
	}
	if p.Protocol == ICMPv6 && p.Destination.Is4() {
		return p, fmt.Errorf("%w: icmpv6 on an IPv4 packet", ErrInvalidPacket)
	}
	if _, ok := p.Protocol.number(); !ok {
		return p, fmt.Errorf("%w: unknown protocol %q", ErrInvalidPacket, p.Protocol)
	}
	if p.Protocol.hasPorts() && p.DestinationPort == 0 {
		return p, fmt.Errorf("%w: %s packet needs a destination port", ErrInvalidPacket, p.Protocol)
	}
	if !p.Protocol.hasPorts() && (p.DestinationPort != 0 || p.SourcePort != 0) {
		return p, fmt.Errorf("%w: %s packets have no ports", ErrInvalidPacket, p.Protocol)
	}
	for _, n := range []string{p.InInterface, p.OutInterface, p.PhysInInterface, p.PhysOutInterface} {
		if len(n) > maxIfaceLen {
			return p, fmt.Errorf("%w: interface name %q longer than %d characters", ErrInvalidPacket, n, maxIfaceLen)
		}
	}
	if p.State < StateNew || p.State > StateRelated {
		return p, fmt.Errorf("%w: unknown state %d", ErrInvalidPacket, int(p.State))
	}
	return p, nil
}

// maxIfaceLen is IFNAMSIZ-1, the longest interface name the kernel accepts.
const maxIfaceLen = 15
