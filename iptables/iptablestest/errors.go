package iptablestest

import (
	"errors"
	"fmt"
)

// Sentinel errors let callers classify failures with errors.Is instead of
// matching message text.
var (
	// ErrUnsupported reports a match module, option or target that the
	// tracer cannot evaluate in a rule the packet reached.
	ErrUnsupported = errors.New("unsupported by the tracer")
	// ErrNoChain reports a jump to a name that is neither a chain of the
	// table nor a target the tracer knows; iptables-restore would have
	// refused such a ruleset.
	ErrNoChain = errors.New("no such chain or target")
	// ErrLoop reports a jump or goto into a chain that is already being
	// traversed; the kernel refuses to load such rulesets.
	ErrLoop = errors.New("chain loop")
	// ErrLimit reports that a trace exceeded TraceOptions.MaxSteps or
	// TraceOptions.MaxOutcomes, which protects callers from hangs and
	// combinatorial explosions.
	ErrLimit = errors.New("trace limit exceeded")
	// ErrNoSet reports a -m set match on an ipset the caller did not
	// provide in TraceOptions.IPSets.
	ErrNoSet = errors.New("ipset not provided")
	// ErrInvalidPacket reports a Packet that cannot be traced (missing
	// addresses, mixed families, unknown protocol...).
	ErrInvalidPacket = errors.New("invalid packet")
	// ErrFamily reports a packet whose address family differs from the
	// family of the dump's addresses.
	ErrFamily = errors.New("address family mismatch")
)

// ParseError locates a problem in dump or ipset-save text, so that the
// author of a renderer sees the offending line rather than a bare message.
type ParseError struct {
	// Line is the 1-based line number in the parsed text.
	Line int
	// Text is the offending line, trimmed.
	Text string
	// Err is the underlying problem.
	Err error
}

// Error implements error.
func (e *ParseError) Error() string {
	return fmt.Sprintf("line %d: %v: %q", e.Line, e.Err, e.Text)
}

// Unwrap exposes the underlying problem to errors.Is / errors.As.
func (e *ParseError) Unwrap() error { return e.Err }

// TraceError locates a problem found while walking a packet, naming the
// table, chain and rule so that `kproxy trace` can point at it.
type TraceError struct {
	// Table and Chain identify where the tracer was.
	Table, Chain string
	// Rule is the rule being evaluated, or nil for chain-level problems.
	Rule *Rule
	// Err is the underlying problem.
	Err error
}

// Error implements error.
func (e *TraceError) Error() string {
	if e.Rule == nil {
		if e.Table == "" {
			return e.Err.Error()
		}
		return fmt.Sprintf("%s %s: %v", e.Table, e.Chain, e.Err)
	}
	return fmt.Sprintf("%s %s #%d (line %d) %q: %v", e.Table, e.Chain, e.Rule.Num, e.Rule.Line, e.Rule.Text, e.Err)
}

// Unwrap exposes the underlying problem to errors.Is / errors.As.
func (e *TraceError) Unwrap() error { return e.Err }

// unsupportedf builds an ErrUnsupported error with context.
func unsupportedf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsupported, fmt.Sprintf(format, args...))
}
