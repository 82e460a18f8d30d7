package iptablestest

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// natTarget is DNAT, SNAT or MASQUERADE. The kernel only accepts them in
// the nat table at specific hooks; the tracer enforces the same so that a
// renderer putting DNAT in POSTROUTING fails its tests.
type natTarget struct {
	kind    string
	addr    netip.Addr
	port    uint16
	hasPort bool
}

var natHooks = map[string][]string{
	"DNAT":       {"PREROUTING", "OUTPUT"},
	"SNAT":       {"POSTROUTING", "INPUT"},
	"MASQUERADE": {"POSTROUTING"},
}

func (n natTarget) apply(c *evalCtx, r *Rule) (flow, error) {
	if c.table != "nat" || !slices.Contains(natHooks[n.kind], c.hook) {
		return flow{}, unsupportedf("%s is only valid in the nat table at %v, not in %s %s", n.kind, natHooks[n.kind], c.table, c.hook)
	}
	p := &c.b.pkt
	switch n.kind {
	case "DNAT":
		p.dst = n.addr
		if n.hasPort {
			p.dport = n.port
		}
		p.dnat = true
		c.b.dnatRule = r
		return flow{kind: flowAccept, desc: "DNAT to " + netip.AddrPortFrom(p.dst, p.dport).String()}, nil
	case "SNAT":
		p.src = n.addr
		if n.hasPort {
			p.sport = n.port
		}
		p.snat = true
		c.b.snatRule = r
		return flow{kind: flowAccept, desc: "SNAT to " + n.addr.String()}, nil
	}
	p.snat = true
	c.b.snatRule = r
	return flow{kind: flowAccept, desc: "MASQUERADE"}, nil
}

func compileNAT(c *ruleCompiler, opts []Option) (target, error) {
	if err := checkNegation(opts); err != nil {
		return nil, err
	}
	t := natTarget{kind: c.r.Target}
	seen := false
	for _, o := range opts {
		switch o.Name {
		case "--to-destination", "--to-source":
			if seen {
				return nil, errors.New("multiple --to options are not supported")
			}
			seen = true
			a, port, hasPort, err := parseNATAddr(o.Values[0])
			if err != nil {
				if errors.Is(err, ErrUnsupported) {
					return failTarget{err: err}, nil
				}
				return nil, err
			}
			if err := c.noteFamily(familyOf(a)); err != nil {
				return nil, err
			}
			t.addr, t.port, t.hasPort = a, port, hasPort
		case "--to-ports":
			if _, err := parsePortRange(o.Values[0]); err != nil {
				return nil, err
			}
		}
	}
	if t.kind != "MASQUERADE" && !seen {
		return nil, fmt.Errorf("%s needs --to-%s", t.kind, map[string]string{"DNAT": "destination", "SNAT": "source"}[t.kind])
	}
	if t.hasPort || hasOption(opts, "--to-ports") {
		if !c.hasProto || c.protoNeg || !slices.Contains([]uint8{6, 17, 132, 33, 136}, c.proto) {
			return nil, errors.New("a port needs -p tcp, udp, sctp, dccp or udplite")
		}
	}
	return t, nil
}

func hasOption(opts []Option, name string) bool {
	for _, o := range opts {
		if o.Name == name {
			return true
		}
	}
	return false
}
