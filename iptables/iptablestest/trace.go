package iptablestest

import (
	"fmt"
	"net/netip"
	"slices"
)

// Default limits of a trace; see TraceOptions.
const (
	DefaultMaxSteps    = 10_000_000
	DefaultMaxOutcomes = 10_000
)

// TraceOptions carries the state of the world outside the ruleset that
// matches depend on, and limits that keep a broken ruleset from hanging a
// test.
type TraceOptions struct {
	// IPSets holds the contents of the ipsets that -m set matches refer
	// to, by set name. A rule the packet reaches that names a missing set
	// fails the trace with ErrNoSet.
	IPSets map[string]Set
	// Recent, when non-nil, is the exact content of the -m recent lists by
	// name (all entries are taken as fresh). When nil, the lists are
	// unknown and every --rcheck/--update/--remove explores both the "entry
	// present" and "entry absent" outcomes.
	Recent map[string][]netip.Addr
	// MaxSteps bounds the number of rule evaluations over all branches;
	// zero means DefaultMaxSteps.
	MaxSteps int
	// MaxOutcomes bounds the number of outcomes; zero means
	// DefaultMaxOutcomes.
	MaxOutcomes int
}

// Trace walks p through d the way the kernel would and returns every
// reachable outcome. The walk is:
//
//	arriving:  raw/mangle/nat PREROUTING -> routing ->
//	           local destination: mangle/filter/security/nat INPUT
//	           otherwise:         mangle/filter/security FORWARD -> mangle/nat POSTROUTING
//	local:     raw/mangle/nat OUTPUT -> routing -> filter/security OUTPUT -> mangle/nat POSTROUTING
//	           and, for a local destination, back in through "lo":
//	           raw/mangle PREROUTING -> mangle/filter/security INPUT
//
// Tables and chains absent from the dump are skipped. The nat table is only
// walked for NEW connections, because the kernel consults it only for the
// first packet of a connection. Errors are *TraceError values wrapping
// ErrUnsupported, ErrNoChain, ErrLoop, ErrLimit, ErrNoSet; an invalid
// packet gives ErrInvalidPacket or ErrFamily.
func Trace(d *Dump, p Packet, opts TraceOptions) (Outcomes, error) {
	if d == nil {
		return nil, fmt.Errorf("iptablestest: Trace needs a parsed dump")
	}
	p, err := p.normalized()
	if err != nil {
		return nil, err
	}
	if d.family != familyUnknown && d.family != familyOf(p.Destination) {
		return nil, fmt.Errorf("%w: %s packet traced through a dump of %s rules", ErrFamily, familyName(familyOf(p.Destination)), familyName(d.family))
	}
	if opts.MaxSteps <= 0 {
		opts.MaxSteps = DefaultMaxSteps
	}
	if opts.MaxOutcomes <= 0 {
		opts.MaxOutcomes = DefaultMaxOutcomes
	}
	t := &tracer{d: d, pkt: p, opts: opts, local: map[netip.Addr]bool{}, sets: map[string]*compiledSet{}}
	for _, a := range p.LocalAddresses {
		t.local[a] = true
	}
	proto, _ := p.Protocol.number()
	b := &branch{
		prob: 1,
		pkt: pktState{
			src: p.Source, dst: p.Destination, sport: p.SourcePort, dport: p.DestinationPort,
			proto: p.Protocol, protoNum: proto, in: p.InInterface, out: p.OutInterface,
			outKnown: p.OutInterface != "", physIn: p.PhysInInterface, physOut: p.PhysOutInterface,
			mark: p.Mark,
		},
	}
	if p.Local {
		b.pkt.in = ""
		b.plan = t.hooks("OUTPUT", "raw", "mangle", "nat")
	} else {
		b.plan = t.hooks("PREROUTING", "raw", "mangle", "nat")
	}
	b.plan = append(b.plan, hookRef{route: true})
	t.work = append(t.work, b)
	for len(t.work) > 0 {
		b := t.work[len(t.work)-1]
		t.work = t.work[:len(t.work)-1]
		if err := t.runBranch(b); err != nil {
			return nil, err
		}
	}
	return t.out, nil
}

// tracer holds what is shared by all branches of one Trace call.
type tracer struct {
	d     *Dump
	pkt   Packet
	opts  TraceOptions
	local map[netip.Addr]bool
	sets  map[string]*compiledSet
	steps int
	work  []*branch
	out   Outcomes
}

// hookRef is one stop on a packet's way: a table's hook chain, or the
// routing decision.
type hookRef struct {
	hook, table string
	route       bool
	// reentry marks the first stop of a locally delivered local packet
	// coming back in through the loopback device.
	reentry bool
}

// hooks lists the tables at a hook in kernel priority order, leaving out
// nat unless the packet starts a connection.
func (t *tracer) hooks(hook string, tables ...string) []hookRef {
	refs := make([]hookRef, 0, len(tables))
	for _, tb := range tables {
		if tb == "nat" && t.pkt.State != StateNew {
			continue
		}
		refs = append(refs, hookRef{hook: hook, table: tb})
	}
	return refs
}

// isLocal reports whether a is one of the node's addresses, which decides
// both routing and addrtype LOCAL.
func (t *tracer) isLocal(a netip.Addr) bool {
	return a.IsLoopback() || t.local[a]
}

// route makes the routing decision and plans the rest of the walk.
func (t *tracer) route(b *branch) {
	local := t.isLocal(b.pkt.dst)
	var next []hookRef
	var desc string
	switch {
	case !t.pkt.Local && local:
		b.path = PathInput
		desc = fmt.Sprintf("%s is local -> INPUT", b.pkt.dst)
		next = t.hooks("INPUT", "mangle", "filter", "security", "nat")
	case !t.pkt.Local:
		b.path = PathForward
		desc = fmt.Sprintf("%s is not local -> FORWARD", b.pkt.dst)
		next = append(t.hooks("FORWARD", "mangle", "filter", "security"), t.hooks("POSTROUTING", "mangle", "nat")...)
	case local:
		b.path = PathLocal
		b.pkt.out, b.pkt.outKnown = "lo", true
		desc = fmt.Sprintf("%s is local -> OUTPUT via lo, then INPUT", b.pkt.dst)
		next = append(t.hooks("OUTPUT", "filter", "security"), t.hooks("POSTROUTING", "mangle", "nat")...)
		back := []hookRef{{hook: "PREROUTING", table: "raw", reentry: true}, {hook: "PREROUTING", table: "mangle"}}
		next = append(next, back...)
		next = append(next, t.hooks("INPUT", "mangle", "filter", "security")...)
	default:
		b.path = PathOutput
		desc = fmt.Sprintf("%s is not local -> OUTPUT", b.pkt.dst)
		next = append(t.hooks("OUTPUT", "filter", "security"), t.hooks("POSTROUTING", "mangle", "nat")...)
	}
	b.plan = append(slices.Clone(b.plan[:b.pos]), next...)
	b.steps = append(b.steps, Step{Result: desc})
}
