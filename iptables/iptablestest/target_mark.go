package iptablestest

import (
	"errors"
	"fmt"
)

// markOp is how MARK / CONNMARK change a 32-bit mark.
type markOp struct {
	name        string
	value, mask uint32
}

// applyTo computes the new mark using the kernel's formulas:
// --set-xmark v/m: (x & ^m) ^ v; --set-mark v/m: (x & ^m) | v;
// --and-mark, --or-mark, --xor-mark: the plain bitwise operation.
func (o markOp) applyTo(x uint32) uint32 {
	switch o.name {
	case "--set-xmark":
		return (x &^ o.mask) ^ o.value
	case "--set-mark":
		return (x &^ o.mask) | o.value
	case "--and-mark":
		return x & o.value
	case "--or-mark":
		return x | o.value
	case "--xor-mark":
		return x ^ o.value
	}
	return x
}

func parseMarkOp(o Option) (markOp, error) {
	op := markOp{name: o.Name}
	var err error
	switch o.Name {
	case "--set-xmark", "--set-mark":
		op.value, op.mask, err = parseMarkMask(o.Values[0])
	default:
		op.value, err = parseUint32(o.Values[0])
	}
	return op, err
}

// markTarget is MARK; it does not end traversal.
type markTarget struct{ op markOp }

func (m markTarget) apply(c *evalCtx, _ *Rule) (flow, error) {
	old := c.b.pkt.mark
	c.b.pkt.mark = m.op.applyTo(old)
	return flow{kind: flowContinue, desc: fmt.Sprintf("MARK %#x -> %#x", old, c.b.pkt.mark)}, nil
}

func compileMarkTarget(_ *ruleCompiler, opts []Option) (target, error) {
	if err := checkNegation(opts); err != nil {
		return nil, err
	}
	if len(opts) != 1 {
		return nil, errors.New("MARK needs exactly one of --set-xmark, --set-mark, --and-mark, --or-mark, --xor-mark")
	}
	op, err := parseMarkOp(opts[0])
	if err != nil {
		return nil, err
	}
	return markTarget{op: op}, nil
}

// connmarkTarget is CONNMARK: it sets the connection mark, or copies
// between packet and connection marks (--save-mark / --restore-mark).
type connmarkTarget struct {
	op             markOp
	save, restore  bool
	nfmask, ctmask uint32
}

func (t connmarkTarget) apply(c *evalCtx, _ *Rule) (flow, error) {
	p := &c.b.pkt
	switch {
	case t.save:
		p.ctmark = (p.ctmark &^ t.ctmask) ^ (p.mark & t.nfmask)
		return flow{kind: flowContinue, desc: fmt.Sprintf("CONNMARK save -> ctmark %#x", p.ctmark)}, nil
	case t.restore:
		p.mark = (p.mark &^ t.nfmask) ^ (p.ctmark & t.ctmask)
		return flow{kind: flowContinue, desc: fmt.Sprintf("CONNMARK restore -> mark %#x", p.mark)}, nil
	}
	p.ctmark = t.op.applyTo(p.ctmark)
	return flow{kind: flowContinue, desc: fmt.Sprintf("CONNMARK -> ctmark %#x", p.ctmark)}, nil
}

func compileConnmarkTarget(_ *ruleCompiler, opts []Option) (target, error) {
	if err := checkNegation(opts); err != nil {
		return nil, err
	}
	t := connmarkTarget{nfmask: 0xffffffff, ctmask: 0xffffffff}
	modes := 0
	for _, o := range opts {
		var err error
		switch o.Name {
		case "--save-mark":
			t.save = true
			modes++
		case "--restore-mark":
			t.restore = true
			modes++
		case "--nfmask":
			t.nfmask, err = parseUint32(o.Values[0])
		case "--ctmask":
			t.ctmask, err = parseUint32(o.Values[0])
		case "--mask":
			t.nfmask, err = parseUint32(o.Values[0])
			t.ctmask = t.nfmask
		default:
			t.op, err = parseMarkOp(o)
			modes++
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.Name, err)
		}
	}
	if modes != 1 {
		return nil, errors.New("CONNMARK needs exactly one action")
	}
	return t, nil
}
