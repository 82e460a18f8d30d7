package iptablestest

import "fmt"

// protoMatcher is -p with a specific protocol.
type protoMatcher uint8

func (p protoMatcher) eval(c *evalCtx) (tri, error) {
	return triOf(c.b.pkt.protoNum == uint8(p)), nil
}

func (protoMatcher) assume(*evalCtx, bool) assumption { return assumption{note: "decided"} }

// addrMatcher is -s / -d.
type addrMatcher struct {
	decided
	m   ipMask
	src bool
}

func (a addrMatcher) eval(c *evalCtx) (tri, error) {
	if a.src {
		return triOf(a.m.contains(c.b.pkt.src)), nil
	}
	return triOf(a.m.contains(c.b.pkt.dst)), nil
}

// ifaceMatcher is -i / -o. The output interface of a routed packet is
// unknown when the Packet did not give one; both outcomes are then
// explored, and assuming a match pins the interface for later rules.
type ifaceMatcher struct {
	name wildcardIface
	out  bool
}

func (m ifaceMatcher) eval(c *evalCtx) (tri, error) {
	if !m.out {
		return triOf(m.name.matches(c.inIface())), nil
	}
	name, known := c.outIface()
	if !known {
		return maybe, nil
	}
	return triOf(m.name.matches(name)), nil
}

func (m ifaceMatcher) assume(c *evalCtx, matched bool) assumption {
	s := string(m.name)
	if matched && s[len(s)-1] != '+' {
		c.b.pkt.out, c.b.pkt.outKnown = s, true
	}
	return assumption{note: fmt.Sprintf("output interface %s %s", verb(matched, "matches", "does not match"), s)}
}

// fragMatcher is -f; traced packets are never non-first fragments.
type fragMatcher struct{ decided }

func (fragMatcher) eval(*evalCtx) (tri, error) { return no, nil }

func verb(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}
