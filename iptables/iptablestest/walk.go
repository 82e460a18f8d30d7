package iptablestest

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// runBranch walks one branch to its outcome. Forks it creates are queued
// on t.work and walked later by Trace.
func (t *tracer) runBranch(b *branch) error {
	c := &evalCtx{t: t, b: b}
	for {
		if len(b.stack) == 0 {
			if b.pos >= len(b.plan) {
				return t.finish(b, Accept, "")
			}
			h := b.plan[b.pos]
			b.pos++
			if h.route {
				t.route(b)
				continue
			}
			if h.reentry {
				b.pkt.in = "lo"
			}
			ch := t.d.Chain(h.table, h.hook)
			if ch == nil {
				continue
			}
			b.hook, b.hookChain = h.hook, ch
			b.stack = append(b.stack, frame{chain: ch})
			continue
		}
		top := &b.stack[len(b.stack)-1]
		if top.next >= len(top.chain.Rules) {
			if len(b.stack) == 1 {
				if done, err := t.policy(b); done || err != nil {
					return err
				}
				continue
			}
			b.stack = b.stack[:len(b.stack)-1]
			continue
		}
		r := top.chain.Rules[top.next]
		top.next++
		t.steps++
		if t.steps > t.opts.MaxSteps {
			return &TraceError{Table: r.Table, Chain: r.Chain, Rule: r, Err: fmt.Errorf("%w: more than %d rule evaluations", ErrLimit, t.opts.MaxSteps)}
		}
		c.table, c.hook = r.Table, b.hook
		matched, note, err := t.evalRule(c, r)
		if err != nil {
			return &TraceError{Table: r.Table, Chain: r.Chain, Rule: r, Err: err}
		}
		if !matched {
			continue
		}
		fl := flow{kind: flowContinue, desc: "matched (no target)"}
		if r.target != nil {
			if fl, err = r.target.apply(c, r); err != nil {
				return &TraceError{Table: r.Table, Chain: r.Chain, Rule: r, Err: err}
			}
		}
		b.steps = append(b.steps, Step{Table: r.Table, Chain: r.Chain, Rule: r, Result: fl.desc, Assumption: note})
		if done, err := t.follow(b, r, fl); done || err != nil {
			return err
		}
	}
}

// follow applies a target's effect on traversal; done reports that the
// branch produced its outcome.
func (t *tracer) follow(b *branch, r *Rule, fl flow) (bool, error) {
	switch fl.kind {
	case flowContinue:
	case flowAccept:
		b.stack = b.stack[:0]
	case flowDrop:
		return true, t.finish(b, Drop, "")
	case flowReject:
		return true, t.finish(b, Reject, fl.rejectWith)
	case flowReturn:
		if len(b.stack) == 1 {
			return t.policy(b)
		}
		b.stack = b.stack[:len(b.stack)-1]
	case flowJump, flowGoto:
		if b.active(fl.chain) {
			return true, &TraceError{Table: r.Table, Chain: r.Chain, Rule: r,
				Err: fmt.Errorf("%w: %s re-enters %s (active: %s)", ErrLoop, r.Target, fl.chain.Name, b.stackNames())}
		}
		if fl.kind == flowJump {
			b.stack = append(b.stack, frame{chain: fl.chain})
			return false, nil
		}
		top := &b.stack[len(b.stack)-1]
		top.gotos = append(top.gotos, top.chain)
		top.chain, top.next = fl.chain, 0
	}
	return false, nil
}

// policy ends the traversal of the current hook chain with its policy.
func (t *tracer) policy(b *branch) (bool, error) {
	ch := b.hookChain
	pol := ch.Policy
	if pol == "" || pol == "-" {
		pol = string(Accept)
	}
	b.steps = append(b.steps, Step{Table: ch.Table, Chain: ch.Name, Result: "policy " + pol})
	b.stack = b.stack[:0]
	switch Verdict(pol) {
	case Accept:
		return false, nil
	case Drop:
		return true, t.finish(b, Drop, "")
	}
	return true, &TraceError{Table: ch.Table, Chain: ch.Name, Err: unsupportedf("policy %q", pol)}
}

// evalRule evaluates r's matchers in order, like the kernel. An
// undecidable matcher without side effects is set aside while the rest of
// the rule is checked, so that a rule another condition rules out never
// causes a fork. Undecidable matchers are then resolved in rule order: a
// copy of the branch in which the match failed is queued, and evaluation
// continues in the copy in which it matched; note describes those
// assumptions. Matchers with side effects resolve what was set aside first,
// so their effects only happen in branches where earlier conditions held.
func (t *tracer) evalRule(c *evalCtx, r *Rule) (bool, string, error) {
	var notes []string
	var pending []matcher
	for _, m := range r.matchers {
		if len(pending) > 0 && hasSideEffects(m) {
			ok, err := t.resolve(c, r, pending, &notes)
			if !ok || err != nil {
				return false, "", err
			}
			pending = pending[:0]
		}
		res, err := m.eval(c)
		if err != nil {
			return false, "", err
		}
		switch {
		case res == no:
			return false, "", nil
		case res == maybe && hasSideEffects(m):
			t.fork(c, r, m, &notes)
		case res == maybe:
			pending = append(pending, m)
		}
	}
	ok, err := t.resolve(c, r, pending, &notes)
	if !ok || err != nil {
		return false, "", err
	}
	return true, strings.Join(notes, "; "), nil
}

// resolve decides the matchers set aside by evalRule, re-evaluating each
// first because an earlier assumption may have decided it (an assumed
// source port, an assumed output interface).
func (t *tracer) resolve(c *evalCtx, r *Rule, pending []matcher, notes *[]string) (bool, error) {
	for _, m := range pending {
		res, err := m.eval(c)
		if err != nil {
			return false, err
		}
		switch res {
		case no:
			return false, nil
		case maybe:
			t.fork(c, r, m, notes)
		}
	}
	return true, nil
}

// fork queues a copy of the branch in which m did not match, and applies
// the "matched" assumption to the current branch.
func (t *tracer) fork(c *evalCtx, r *Rule, m matcher, notes *[]string) {
	f := c.b.clone()
	fc := &evalCtx{t: t, b: f, table: c.table, hook: c.hook}
	a := m.assume(fc, false)
	f.record(a)
	forkNotes := append(slices.Clone(*notes), a.note)
	f.steps = append(f.steps, Step{Table: r.Table, Chain: r.Chain, Rule: r, Result: "no match", Assumption: strings.Join(forkNotes, "; ")})
	t.work = append(t.work, f)
	a = m.assume(c, true)
	c.b.record(a)
	*notes = append(*notes, a.note)
}

// finish records the branch's outcome.
func (t *tracer) finish(b *branch, v Verdict, rejectWith string) error {
	if len(t.out) >= t.opts.MaxOutcomes {
		return &TraceError{Err: fmt.Errorf("%w: more than %d outcomes", ErrLimit, t.opts.MaxOutcomes)}
	}
	t.out = append(t.out, Outcome{
		Verdict:     v,
		RejectWith:  rejectWith,
		Path:        b.path,
		Source:      b.pkt.src,
		Destination: netip.AddrPortFrom(b.pkt.dst, b.pkt.dport),
		DNAT:        b.dnatRule,
		Masqueraded: b.snatRule != nil,
		SNAT:        b.snatRule,
		Mark:        b.pkt.mark,
		Probability: b.prob,
		Assumptions: b.assumptions,
		Steps:       b.steps,
	})
	return nil
}
