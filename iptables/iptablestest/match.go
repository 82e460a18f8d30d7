package iptablestest

// tri is the result of evaluating a match against a packet: matched, not
// matched, or undecidable from what the tracer knows (a random choice, an
// unknown affinity entry, a field the packet left unspecified).
type tri uint8

const (
	no tri = iota
	yes
	maybe
)

func triOf(b bool) tri {
	if b {
		return yes
	}
	return no
}

func (t tri) not() tri {
	switch t {
	case yes:
		return no
	case no:
		return yes
	}
	return maybe
}

// matcher is one compiled condition of a rule. Matchers are evaluated in
// rule order, stopping at the first that does not match, exactly like the
// kernel; side effects (-m recent --set) therefore happen only when every
// earlier condition matched.
type matcher interface {
	eval(c *evalCtx) (tri, error)
	// assume is called on a copy of the trace state after eval returned
	// maybe, once with matched=true and once with matched=false. It applies
	// the consequences of the decision (e.g. remembers that an affinity
	// entry exists) and describes it.
	assume(c *evalCtx, matched bool) assumption
}

// assumption describes a decision the tracer took for an undecidable
// match. Random decisions (statistic) carry their probability; the others
// are facts about the world the trace depends on.
type assumption struct {
	note   string
	random bool
	prob   float64
}

// decided is embedded by matchers that never return maybe.
type decided struct{}

func (decided) assume(*evalCtx, bool) assumption { return assumption{note: "decided"} }

// notMatcher implements "!" for matchers whose negation is a plain
// inversion.
type notMatcher struct{ m matcher }

func (n notMatcher) eval(c *evalCtx) (tri, error) {
	r, err := n.m.eval(c)
	return r.not(), err
}

func (n notMatcher) assume(c *evalCtx, matched bool) assumption {
	return n.m.assume(c, !matched)
}

func negate(m matcher, neg bool) matcher {
	if neg {
		return notMatcher{m}
	}
	return m
}

// failMatcher stands for a part of a rule the tracer cannot evaluate; it
// fails the trace when reached, never matching silently.
type failMatcher struct {
	decided
	err error
}

func (f failMatcher) eval(*evalCtx) (tri, error) { return no, f.err }

// wildcardIface matches an interface name the iptables way: a trailing "+"
// matches any name with that prefix.
type wildcardIface string

func (w wildcardIface) matches(name string) bool {
	s := string(w)
	if n := len(s); n > 0 && s[n-1] == '+' {
		return len(name) >= n-1 && name[:n-1] == s[:n-1]
	}
	return name == s
}

// constMatcher always gives the same answer ("! -p all" never matches).
type constMatcher tri

func (m constMatcher) eval(*evalCtx) (tri, error) { return tri(m), nil }

func (constMatcher) assume(*evalCtx, bool) assumption { return assumption{note: "decided"} }

// hasSideEffects reports matchers whose evaluation or assumptions change
// the trace state (-m recent); the tracer must not look past them.
func hasSideEffects(m matcher) bool {
	switch m := m.(type) {
	case notMatcher:
		return hasSideEffects(m.m)
	case recentMatcher:
		return true
	}
	return false
}
