package iptablestest

import (
	"fmt"
	"strings"
)

// Conntrack states as bits (-m conntrack --ctstate, -m state --state).
const (
	ctInvalid uint8 = 1 << iota
	ctNew
	ctEstablished
	ctRelated
	ctUntracked
	ctSNAT
	ctDNAT
)

var ctStateNames = map[string]uint8{
	"INVALID": ctInvalid, "NEW": ctNew, "ESTABLISHED": ctEstablished, "RELATED": ctRelated,
	"UNTRACKED": ctUntracked, "SNAT": ctSNAT, "DNAT": ctDNAT,
}

// Conntrack status bits (--ctstatus).
const (
	csExpected uint8 = 1 << iota
	csSeenReply
	csAssured
	csConfirmed
)

var ctStatusNames = map[string]uint8{
	"NONE": 0, "EXPECTED": csExpected, "SEEN_REPLY": csSeenReply, "ASSURED": csAssured, "CONFIRMED": csConfirmed,
}

// ctStateMatcher is --ctstate / --state. The virtual SNAT and DNAT states
// follow the NAT done earlier in this trace for NEW packets; for other
// packets the connection's NAT bindings are unknown and both outcomes are
// explored.
type ctStateMatcher struct {
	mask uint8
	spec string
}

func (m ctStateMatcher) bits(c *evalCtx) (known, unknown uint8) {
	switch c.t.pkt.State {
	case StateNew:
		known = ctNew
		if c.b.pkt.dnat {
			known |= ctDNAT
		}
		if c.b.pkt.snat {
			known |= ctSNAT
		}
		return known, 0
	case StateEstablished:
		return ctEstablished, ctSNAT | ctDNAT
	}
	return ctRelated, ctSNAT | ctDNAT
}

func (m ctStateMatcher) eval(c *evalCtx) (tri, error) {
	known, unknown := m.bits(c)
	switch {
	case known&m.mask != 0:
		return yes, nil
	case unknown&m.mask != 0:
		return maybe, nil
	}
	return no, nil
}

func (m ctStateMatcher) assume(_ *evalCtx, matched bool) assumption {
	return assumption{note: fmt.Sprintf("the connection's NAT state %s %s", verb(matched, "matches", "does not match"), m.spec)}
}

// ctStatusMatcher is --ctstatus. The first packet of a connection has no
// status yet (EXPECTED for a RELATED one); an established connection is
// taken to be SEEN_REPLY, ASSURED and CONFIRMED.
type ctStatusMatcher struct {
	decided
	mask uint8
}

func (m ctStatusMatcher) eval(c *evalCtx) (tri, error) {
	var st uint8
	switch c.t.pkt.State {
	case StateEstablished:
		st = csSeenReply | csAssured | csConfirmed
	case StateRelated:
		st = csExpected
	}
	return triOf(st&m.mask != 0), nil
}

// ctTupleMatcher is --ctproto, --ctorigsrc/dst and --ctorigsrc/dstport: the
// original tuple is the packet as it entered the node.
type ctTupleMatcher struct {
	decided
	opt   string
	addr  ipMask
	ports portRange
	proto uint8
}

func (m ctTupleMatcher) eval(c *evalCtx) (tri, error) {
	p := c.t.pkt
	pn, _ := p.Protocol.number()
	switch m.opt {
	case "--ctproto":
		return triOf(m.proto == 0 || pn == m.proto), nil
	case "--ctorigsrc":
		return triOf(m.addr.contains(p.Source)), nil
	case "--ctorigdst":
		return triOf(m.addr.contains(p.Destination)), nil
	case "--ctorigsrcport":
		if p.SourcePort == 0 {
			return no, unsupportedf("--ctorigsrcport needs the packet's source port")
		}
		return triOf(p.Protocol.hasPorts() && m.ports.contains(p.SourcePort)), nil
	}
	return triOf(p.Protocol.hasPorts() && m.ports.contains(p.DestinationPort)), nil
}

// ctDirMatcher is --ctdir; traced packets are in the original direction.
type ctDirMatcher struct {
	decided
	original bool
}

func (m ctDirMatcher) eval(*evalCtx) (tri, error) { return triOf(m.original), nil }

func parseBits(s string, names map[string]uint8, what string) (uint8, error) {
	var v uint8
	for _, n := range strings.Split(s, ",") {
		b, ok := names[strings.ToUpper(n)]
		if !ok {
			return 0, fmt.Errorf("unknown %s %q", what, n)
		}
		v |= b
	}
	return v, nil
}

func compileConntrack(c *ruleCompiler, m *Match) error {
	for _, o := range m.Options {
		var mt matcher
		switch o.Name {
		case "--ctstate", "--state":
			mask, err := parseBits(o.Values[0], ctStateNames, "state")
			if err != nil {
				return err
			}
			if o.Name == "--state" && mask&(ctSNAT|ctDNAT) != 0 {
				return fmt.Errorf("--state does not know %s", o.Values[0])
			}
			mt = ctStateMatcher{mask: mask, spec: o.Values[0]}
		case "--ctstatus":
			mask, err := parseBits(o.Values[0], ctStatusNames, "status")
			if err != nil {
				return err
			}
			mt = ctStatusMatcher{mask: mask}
		case "--ctproto":
			n, err := parseProto(strings.ToLower(o.Values[0]))
			if err != nil {
				return err
			}
			mt = ctTupleMatcher{opt: o.Name, proto: n}
		case "--ctorigsrc", "--ctorigdst":
			a, err := c.ipMask(o.Values[0])
			if err != nil {
				return fmt.Errorf("%s: %w", o.Name, err)
			}
			mt = ctTupleMatcher{opt: o.Name, addr: a}
		case "--ctorigsrcport", "--ctorigdstport":
			r, err := parsePortRange(o.Values[0])
			if err != nil {
				return fmt.Errorf("%s: %w", o.Name, err)
			}
			mt = ctTupleMatcher{opt: o.Name, ports: r}
		case "--ctdir":
			switch strings.ToUpper(o.Values[0]) {
			case "ORIGINAL":
				mt = ctDirMatcher{original: true}
			case "REPLY":
				mt = ctDirMatcher{}
			default:
				return fmt.Errorf("--ctdir: unknown direction %q", o.Values[0])
			}
		default:
			c.fail(unsupportedf("option %s of match conntrack", o.Name))
			continue
		}
		c.add(negate(mt, o.Negated))
	}
	return nil
}
