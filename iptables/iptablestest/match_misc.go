package iptablestest

import (
	"fmt"
	"net/netip"
	"strings"
)

// maxCommentLen is the kernel's limit (XT_MAX_COMMENT_LEN minus the NUL).
const maxCommentLen = 255

func compileComment(_ *ruleCompiler, m *Match) error {
	for _, o := range m.Options {
		if len(o.Values[0]) > maxCommentLen {
			return fmt.Errorf("comment longer than %d bytes", maxCommentLen)
		}
		if o.Negated {
			return fmt.Errorf("--comment cannot be negated")
		}
	}
	return nil
}

// Address types of -m addrtype, as bits.
const (
	atUnspec uint16 = 1 << iota
	atUnicast
	atLocal
	atBroadcast
	atAnycast
	atMulticast
	atBlackhole
	atUnreachable
	atProhibit
	atThrow
	atNAT
	atXresolve
)

var addrTypeNames = map[string]uint16{
	"UNSPEC": atUnspec, "UNICAST": atUnicast, "LOCAL": atLocal, "BROADCAST": atBroadcast,
	"ANYCAST": atAnycast, "MULTICAST": atMulticast, "BLACKHOLE": atBlackhole,
	"UNREACHABLE": atUnreachable, "PROHIBIT": atProhibit, "THROW": atThrow, "NAT": atNAT,
	"XRESOLVE": atXresolve,
}

// atComputable are the types the tracer can decide from the node's local
// addresses; the others depend on the routing table.
const atComputable = atUnspec | atUnicast | atLocal | atBroadcast | atMulticast

// addrtypeMatcher is --src-type / --dst-type. --limit-iface-in/out are
// accepted and ignored: local addresses are not modelled per interface.
type addrtypeMatcher struct {
	decided
	types uint16
	src   bool
	spec  string
}

func (m addrtypeMatcher) eval(c *evalCtx) (tri, error) {
	if m.types&^atComputable != 0 {
		return no, unsupportedf("address type %s depends on the routing table", m.spec)
	}
	a := c.b.pkt.dst
	if m.src {
		a = c.b.pkt.src
	}
	return triOf(addrTypeOf(c.t, a)&m.types != 0), nil
}

// addrTypeOf classifies an address like a lookup in the node's routing
// tables would, as far as the node's local addresses tell.
func addrTypeOf(t *tracer, a netip.Addr) uint16 {
	switch {
	case t.isLocal(a):
		return atLocal
	case a.IsUnspecified():
		return atUnspec
	case a.IsMulticast():
		return atMulticast
	case a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return atBroadcast
	}
	return atUnicast
}

func compileAddrtype(c *ruleCompiler, m *Match) error {
	for _, o := range m.Options {
		switch o.Name {
		case "--limit-iface-in", "--limit-iface-out":
			continue
		}
		var types uint16
		for _, n := range strings.Split(o.Values[0], ",") {
			bit, ok := addrTypeNames[strings.ToUpper(n)]
			if !ok {
				return fmt.Errorf("%s: unknown address type %q", o.Name, n)
			}
			types |= bit
		}
		c.add(negate(addrtypeMatcher{types: types, src: o.Name == "--src-type", spec: o.Values[0]}, o.Negated))
	}
	return nil
}

// markMatcher is -m mark --mark and -m connmark --mark.
type markMatcher struct {
	decided
	value, mask uint32
	conn        bool
}

func (m markMatcher) eval(c *evalCtx) (tri, error) {
	x := c.b.pkt.mark
	if m.conn {
		x = c.b.pkt.ctmark
	}
	return triOf(x&m.mask == m.value), nil
}

func compileMark(c *ruleCompiler, m *Match) error {
	for _, o := range m.Options {
		v, mask, err := parseMarkMask(o.Values[0])
		if err != nil {
			return fmt.Errorf("%s: %w", o.Name, err)
		}
		c.add(negate(markMatcher{value: v, mask: mask, conn: m.Module == "connmark"}, o.Negated))
	}
	return nil
}

// physdevMatcher is -m physdev. A bridged packet is one with a physical
// output port (the kernel's --physdev-is-bridged test).
type physdevMatcher struct {
	decided
	opt  string
	name wildcardIface
}

func (m physdevMatcher) eval(c *evalCtx) (tri, error) {
	p := c.b.pkt
	switch m.opt {
	case "--physdev-in":
		return triOf(p.physIn != "" && m.name.matches(p.physIn)), nil
	case "--physdev-out":
		return triOf(p.physOut != "" && m.name.matches(p.physOut)), nil
	case "--physdev-is-in":
		return triOf(p.physIn != ""), nil
	}
	return triOf(p.physOut != ""), nil
}

func compilePhysdev(c *ruleCompiler, m *Match) error {
	for _, o := range m.Options {
		pm := physdevMatcher{opt: o.Name}
		if len(o.Values) == 1 {
			if len(o.Values[0]) > maxIfaceLen {
				return fmt.Errorf("%s: invalid interface name %q", o.Name, o.Values[0])
			}
			pm.name = wildcardIface(o.Values[0])
		}
		c.add(negate(pm, o.Negated))
	}
	return nil
}
