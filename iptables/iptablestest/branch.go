package iptablestest

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// pktState is the packet as the current branch sees it.
type pktState struct {
	src, dst        netip.Addr
	sport, dport    uint16
	proto           Protocol
	protoNum        uint8
	in, out         string
	outKnown        bool
	physIn, physOut string
	mark, ctmark    uint32
	// dnat and snat mirror the conntrack IPS_DST_NAT / IPS_SRC_NAT status.
	dnat, snat bool
}

// frame is a chain being traversed; gotos remembers chains this frame
// left through -g, which are still "active" for loop detection.
type frame struct {
	chain *Chain
	next  int
	gotos []*Chain
}

// branch is one possible history of the packet. Undecidable matches copy
// the branch; the copies never share mutable state.
type branch struct {
	plan        []hookRef
	pos         int
	hook        string
	hookChain   *Chain
	stack       []frame
	pkt         pktState
	path        Path
	dnatRule    *Rule
	snatRule    *Rule
	prob        float64
	assumptions []string
	steps       []Step
	recent      map[recentKey]bool
}

func (b *branch) clone() *branch {
	n := *b
	n.stack = make([]frame, len(b.stack))
	for i, f := range b.stack {
		f.gotos = slices.Clone(f.gotos)
		n.stack[i] = f
	}
	n.steps = slices.Clone(b.steps)
	n.assumptions = slices.Clone(b.assumptions)
	n.recent = maps.Clone(b.recent)
	return &n
}

func (b *branch) record(a assumption) {
	if a.random {
		b.prob *= a.prob
		return
	}
	b.assumptions = append(b.assumptions, a.note)
}

// active reports whether ch is being traversed (on the stack, or left by
// goto from a frame on the stack); entering it again would loop forever.
func (b *branch) active(ch *Chain) bool {
	for _, f := range b.stack {
		if f.chain == ch || slices.Contains(f.gotos, ch) {
			return true
		}
	}
	return false
}

func (b *branch) stackNames() string {
	var names []string
	for _, f := range b.stack {
		for _, g := range f.gotos {
			names = append(names, g.Name)
		}
		names = append(names, f.chain.Name)
	}
	return strings.Join(names, " -> ")
}

// evalCtx is what matchers and targets see: the tracer, the branch and
// where in the walk the rule is.
type evalCtx struct {
	t     *tracer
	b     *branch
	table string
	hook  string
}

// inIface is the input device as the kernel passes it to the hook: none
// for OUTPUT and POSTROUTING.
func (c *evalCtx) inIface() string {
	if c.hook == "OUTPUT" || c.hook == "POSTROUTING" {
		return ""
	}
	return c.b.pkt.in
}

// outIface is the output device as the kernel passes it to the hook: none
// before routing of arriving packets; unknown when the packet did not say.
func (c *evalCtx) outIface() (string, bool) {
	if c.hook == "PREROUTING" || c.hook == "INPUT" {
		return "", true
	}
	return c.b.pkt.out, c.b.pkt.outKnown
}
