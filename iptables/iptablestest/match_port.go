package iptablestest

import (
	"errors"
	"fmt"
	"strings"
)

// portMatcher is --dport / --sport of the tcp, udp and sctp matches, and
// the port lists of multiport. An unknown source port explores both
// outcomes.
type portMatcher struct {
	ranges []portRange
	// dir: 'd' destination, 's' source, 'b' either (multiport --ports).
	dir byte
}

func (m portMatcher) in(p uint16) bool {
	for _, r := range m.ranges {
		if r.contains(p) {
			return true
		}
	}
	return false
}

func (m portMatcher) eval(c *evalCtx) (tri, error) {
	p := c.b.pkt
	if !p.proto.hasPorts() {
		return no, nil
	}
	switch m.dir {
	case 'd':
		return triOf(m.in(p.dport)), nil
	case 'b':
		if m.in(p.dport) {
			return yes, nil
		}
	}
	if p.sport == 0 {
		return maybe, nil
	}
	return triOf(m.in(p.sport)), nil
}

func (m portMatcher) assume(c *evalCtx, matched bool) assumption {
	if matched && c.b.pkt.sport == 0 {
		c.b.pkt.sport = max(m.ranges[0].lo, 1)
	}
	return assumption{note: fmt.Sprintf("source port %s %s", verb(matched, "in", "not in"), m.describe())}
}

func (m portMatcher) describe() string {
	s := make([]string, len(m.ranges))
	for i, r := range m.ranges {
		s[i] = r.String()
	}
	return strings.Join(s, ",")
}

// tcpFlagsMatcher is --syn / --tcp-flags. The first packet of a NEW
// connection is taken to carry exactly SYN; flags of other packets are
// unknown and explored both ways.
type tcpFlagsMatcher struct {
	mask, comp uint8
}

var tcpFlagBits = map[string]uint8{
	"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08, "ACK": 0x10, "URG": 0x20, "ECE": 0x40, "CWR": 0x80,
	"ALL": 0xff, "NONE": 0,
}

func parseTCPFlags(s string) (uint8, error) {
	var v uint8
	for _, f := range strings.Split(s, ",") {
		b, ok := tcpFlagBits[strings.ToUpper(f)]
		if !ok {
			return 0, fmt.Errorf("unknown TCP flag %q", f)
		}
		v |= b
	}
	return v, nil
}

func (m tcpFlagsMatcher) eval(c *evalCtx) (tri, error) {
	if c.t.pkt.State != StateNew {
		return maybe, nil
	}
	return triOf(0x02&m.mask == m.comp), nil
}

func (m tcpFlagsMatcher) assume(_ *evalCtx, matched bool) assumption {
	return assumption{note: fmt.Sprintf("TCP flags %s (mask %#x comp %#x)", verb(matched, "match", "do not match"), m.mask, m.comp)}
}

func compilePorts(c *ruleCompiler, m *Match) error {
	for _, o := range m.Options {
		switch o.Name {
		case "--dport", "--sport":
			r, err := parsePortRange(o.Values[0])
			if err != nil {
				return fmt.Errorf("%s: %w", o.Name, err)
			}
			c.add(negate(portMatcher{ranges: []portRange{r}, dir: o.Name[2]}, o.Negated))
		case "--syn":
			c.add(negate(tcpFlagsMatcher{mask: 0x17, comp: 0x02}, o.Negated))
		case "--tcp-flags":
			mask, err := parseTCPFlags(o.Values[0])
			if err != nil {
				return err
			}
			comp, err := parseTCPFlags(o.Values[1])
			if err != nil {
				return err
			}
			c.add(negate(tcpFlagsMatcher{mask: mask, comp: comp}, o.Negated))
		default:
			c.fail(unsupportedf("option %s of match %s", o.Name, m.Module))
		}
	}
	return nil
}

// maxMultiport is the kernel's limit on multiport entries (a range counts
// twice).
const maxMultiport = 15

func compileMultiport(c *ruleCompiler, m *Match) error {
	if len(m.Options) != 1 {
		return errors.New("multiport needs exactly one of --dports, --sports, --ports")
	}
	o := m.Options[0]
	var pm portMatcher
	pm.dir = map[string]byte{"--dports": 'd', "--sports": 's', "--ports": 'b'}[o.Name]
	slots := 0
	for _, part := range strings.Split(o.Values[0], ",") {
		r, err := parsePortRange(part)
		if err != nil {
			return fmt.Errorf("%s: %w", o.Name, err)
		}
		slots++
		if r.lo != r.hi {
			slots++
		}
		pm.ranges = append(pm.ranges, r)
	}
	if slots > maxMultiport {
		return fmt.Errorf("%s: too many ports (kernel limit is %d, a range counts twice)", o.Name, maxMultiport)
	}
	c.add(negate(pm, o.Negated))
	return nil
}

// icmpMatcher is --icmp-type / --icmpv6-type; ICMP types are not modelled,
// so both outcomes are explored.
type icmpMatcher struct{ typ string }

func (icmpMatcher) eval(*evalCtx) (tri, error) { return maybe, nil }

func (m icmpMatcher) assume(_ *evalCtx, matched bool) assumption {
	return assumption{note: fmt.Sprintf("ICMP type %s %s", verb(matched, "is", "is not"), m.typ)}
}

func compileICMP(c *ruleCompiler, m *Match) error {
	for _, o := range m.Options {
		c.add(negate(icmpMatcher{typ: o.Values[0]}, o.Negated))
	}
	return nil
}
