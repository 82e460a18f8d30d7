package iptablestest

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Verdict is the final fate of a traced packet.
type Verdict string

// Verdicts a trace can end with.
const (
	Accept Verdict = "ACCEPT"
	Drop   Verdict = "DROP"
	Reject Verdict = "REJECT"
)

// Path says where the routing decision sent the packet, which is what
// tests of NodePort / external traffic usually care about.
type Path string

// Paths a packet can take through the node.
const (
	// PathNone: the packet was dropped before the routing decision.
	PathNone Path = ""
	// PathInput: an arriving packet delivered to this host.
	PathInput Path = "INPUT"
	// PathForward: an arriving packet routed onwards.
	PathForward Path = "FORWARD"
	// PathOutput: a locally generated packet leaving the host.
	PathOutput Path = "OUTPUT"
	// PathLocal: a locally generated packet delivered to this host
	// (through the loopback device, so it also traverses INPUT).
	PathLocal Path = "LOCAL"
)

// Outcome is one way a packet can end up. A deterministic ruleset yields a
// single outcome; every undecidable match (statistic, recent, unspecified
// packet fields) doubles the ways the packet can go.
type Outcome struct {
	// Verdict is ACCEPT, DROP or REJECT.
	Verdict Verdict
	// RejectWith is the --reject-with value of a REJECT verdict.
	RejectWith string
	// Path is where routing sent the packet.
	Path Path
	// Source is the source address after SNAT. MASQUERADE does not change
	// it because interface addresses are not modelled; see Masqueraded.
	Source netip.Addr
	// Destination is the destination after DNAT, or the original one.
	Destination netip.AddrPort
	// DNAT is the rule that rewrote the destination, or nil.
	DNAT *Rule
	// Masqueraded reports that a MASQUERADE or SNAT target applied.
	Masqueraded bool
	// SNAT is the MASQUERADE or SNAT rule that applied, or nil.
	SNAT *Rule
	// Mark is the packet mark at the end of the trace.
	Mark uint32
	// Probability is the chance of this outcome among the random choices
	// (-m statistic) it depends on, given its Assumptions hold.
	Probability float64
	// Assumptions lists the non-random facts this outcome depends on, such
	// as "recent list KUBE-SEP-X holds 10.0.0.2".
	Assumptions []string
	// Steps is the ordered trace: every rule that matched, routing
	// decisions, policies, and rules that were assumed not to match.
	Steps []Step
}

// Step is one line of a trace.
type Step struct {
	// Table and Chain locate the step; both are empty for routing steps.
	Table, Chain string
	// Rule is the rule that matched (or was assumed not to), or nil for
	// policy and routing steps.
	Rule *Rule
	// Result says what happened: "jump KUBE-SVC-X", "DNAT to 10.1.0.1:80",
	// "policy ACCEPT", "no match", ...
	Result string
	// Assumption explains any undecidable match the step depended on.
	Assumption string
}

// String renders the step as `table chain #N: <rule text> -> result`.
func (s Step) String() string {
	var b strings.Builder
	switch {
	case s.Rule != nil:
		fmt.Fprintf(&b, "%s %s #%d: %s -> %s", s.Table, s.Chain, s.Rule.Num, s.Rule.Text, s.Result)
	case s.Table == "":
		fmt.Fprintf(&b, "routing: %s", s.Result)
	default:
		fmt.Fprintf(&b, "%s %s: %s", s.Table, s.Chain, s.Result)
	}
	if s.Assumption != "" {
		fmt.Fprintf(&b, " [assuming %s]", s.Assumption)
	}
	return b.String()
}

// String summarises the outcome on one line.
func (o Outcome) String() string {
	var b strings.Builder
	b.WriteString(string(o.Verdict))
	if o.Verdict == Reject && o.RejectWith != "" {
		fmt.Fprintf(&b, " (%s)", o.RejectWith)
	}
	if o.Verdict == Accept {
		fmt.Fprintf(&b, " %s", o.Destination)
		if o.DNAT != nil {
			b.WriteString(" (DNAT)")
		}
		if o.Path != PathNone {
			fmt.Fprintf(&b, " via %s", o.Path)
		}
		if o.Masqueraded {
			b.WriteString(" masqueraded")
		}
	}
	fmt.Fprintf(&b, " mark=%#x p=%.4g", o.Mark, o.Probability)
	if len(o.Assumptions) > 0 {
		fmt.Fprintf(&b, " assuming %s", strings.Join(o.Assumptions, "; "))
	}
	return b.String()
}

// Outcomes is every way a traced packet can end up, in exploration order.
type Outcomes []Outcome

// Endpoints returns the distinct destinations of accepted outcomes that
// went through DNAT, sorted, which is what a Service test asserts.
func (os Outcomes) Endpoints() []netip.AddrPort {
	var eps []netip.AddrPort
	for _, o := range os {
		if o.Verdict == Accept && o.DNAT != nil && !slices.Contains(eps, o.Destination) {
			eps = append(eps, o.Destination)
		}
	}
	slices.SortFunc(eps, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return eps
}

// Verdicts returns the distinct verdicts, sorted.
func (os Outcomes) Verdicts() []Verdict {
	var vs []Verdict
	for _, o := range os {
		if !slices.Contains(vs, o.Verdict) {
			vs = append(vs, o.Verdict)
		}
	}
	slices.SortFunc(vs, func(a, b Verdict) int { return cmp.Compare(a, b) })
	return vs
}

// Masqueraded reports whether all (always) or some (sometimes) accepted
// outcomes were masqueraded or SNATed; both are false when nothing is
// accepted.
func (os Outcomes) Masqueraded() (always, sometimes bool) {
	accepted := 0
	masq := 0
	for _, o := range os {
		if o.Verdict != Accept {
			continue
		}
		accepted++
		if o.Masqueraded {
			masq++
		}
	}
	return accepted > 0 && masq == accepted, masq > 0
}

// String renders every outcome with its full trace, the format `kproxy
// trace` prints.
func (os Outcomes) String() string {
	var b strings.Builder
	for i, o := range os {
		fmt.Fprintf(&b, "outcome %d: %s\n", i+1, o)
		for _, s := range o.Steps {
			fmt.Fprintf(&b, "  %s\n", s)
		}
	}
	return b.String()
}
