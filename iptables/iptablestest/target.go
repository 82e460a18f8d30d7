package iptablestest

import (
	"fmt"
)

// flowKind says how traversal continues after a rule's target.
type flowKind int

const (
	// flowContinue: non-terminating target (MARK, LOG, no target).
	flowContinue flowKind = iota
	// flowAccept: the table accepts; the walk goes on to the next hook.
	flowAccept
	flowDrop
	flowReject
	flowReturn
	flowJump
	flowGoto
)

// flow is the result of applying a target.
type flow struct {
	kind       flowKind
	chain      *Chain
	rejectWith string
	desc       string
}

// target is a compiled -j/-g.
type target interface {
	apply(c *evalCtx, r *Rule) (flow, error)
}

// verdictTarget is ACCEPT, DROP or RETURN.
type verdictTarget flowKind

func (v verdictTarget) apply(*evalCtx, *Rule) (flow, error) {
	switch flowKind(v) {
	case flowAccept:
		return flow{kind: flowAccept, desc: "ACCEPT"}, nil
	case flowDrop:
		return flow{kind: flowDrop, desc: "DROP"}, nil
	}
	return flow{kind: flowReturn, desc: "RETURN"}, nil
}

func compileVerdictTarget(c *ruleCompiler, _ []Option) (target, error) {
	switch c.r.Target {
	case "ACCEPT":
		return verdictTarget(flowAccept), nil
	case "DROP":
		return verdictTarget(flowDrop), nil
	}
	return verdictTarget(flowReturn), nil
}

// jumpTarget enters a user chain with -j (return to the caller) or -g
// (return to the caller's caller).
type jumpTarget struct {
	chain  *Chain
	isGoto bool
}

func (j jumpTarget) apply(*evalCtx, *Rule) (flow, error) {
	if j.isGoto {
		return flow{kind: flowGoto, chain: j.chain, desc: "goto " + j.chain.Name}, nil
	}
	return flow{kind: flowJump, chain: j.chain, desc: "jump " + j.chain.Name}, nil
}

// failTarget stands for a target the tracer cannot apply.
type failTarget struct{ err error }

func (f failTarget) apply(*evalCtx, *Rule) (flow, error) { return flow{}, f.err }

// rejectTarget ends the packet with an error reply. Like the kernel, it
// is only valid in the filter table at INPUT, FORWARD and OUTPUT.
type rejectTarget struct{ with string }

func (t rejectTarget) apply(c *evalCtx, _ *Rule) (flow, error) {
	if c.table != "filter" || (c.hook != "INPUT" && c.hook != "FORWARD" && c.hook != "OUTPUT") {
		return flow{}, unsupportedf("REJECT is only valid in the filter table at INPUT, FORWARD and OUTPUT, not in %s %s", c.table, c.hook)
	}
	with := t.with
	if with == "" {
		with = "icmp-port-unreachable"
		if c.b.pkt.dst.Is6() {
			with = "icmp6-port-unreachable"
		}
	}
	return flow{kind: flowReject, rejectWith: with, desc: "REJECT " + with}, nil
}

func compileReject(_ *ruleCompiler, opts []Option) (target, error) {
	var t rejectTarget
	for _, o := range opts {
		t.with = o.Values[0]
	}
	return t, nil
}

// logTarget only logs; traversal continues.
type logTarget struct{}

func (logTarget) apply(*evalCtx, *Rule) (flow, error) {
	return flow{kind: flowContinue, desc: "LOG (continue)"}, nil
}

func compileLog(*ruleCompiler, []Option) (target, error) { return logTarget{}, nil }

// checkNegation refuses "!" on target options, which iptables rejects.
func checkNegation(opts []Option) error {
	for _, o := range opts {
		if o.Negated {
			return fmt.Errorf("option %s cannot be negated", o.Name)
		}
	}
	return nil
}
