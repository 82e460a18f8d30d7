// Package iptablestest parses iptables-save / ip6tables-save dumps and walks
// packets through them the way the kernel would, so that tests (and the
// `kproxy trace` debugging command) can reason about what a ruleset *does*
// rather than what its text looks like.
//
// A renderer test typically renders a ruleset, parses it with [ParseDump],
// and asserts on the behaviour of a few packets:
//
//	dump, err := iptablestest.ParseDump(text)
//	...
//	out, err := iptablestest.Trace(dump, iptablestest.Packet{
//		Source:          netip.MustParseAddr("10.0.0.2"),
//		Destination:     netip.MustParseAddr("172.30.0.41"),
//		Protocol:        iptablestest.TCP,
//		DestinationPort: 80,
//	}, iptablestest.TraceOptions{})
//	// out.Endpoints() lists every backend the packet can reach.
//
// Non-deterministic matches (-m statistic, -m recent checks, fields the
// packet leaves unspecified) are explored as branches: Trace returns every
// reachable [Outcome], each with its own step-by-step trace, the chance of
// reaching it given the facts it assumed, and the assumptions themselves.
//
// The tracer is deliberately strict: a rule the packet reaches that uses a
// match module, option or target it cannot evaluate is a tracing error,
// never silently treated as matching, because a tracer that guesses would
// let renderer bugs through.
//
// Scope and simplifications (all documented on the relevant identifiers):
// only packets of a connection's original direction are modelled; NAT is
// evaluated only for NEW connections (as in the kernel, where only the first
// packet of a connection traverses the nat table); MASQUERADE does not
// rewrite the source address because the outgoing interface's address is
// not modelled; the raw, mangle, nat, filter and security tables are walked,
// other tables are parsed and ignored.
package iptablestest
