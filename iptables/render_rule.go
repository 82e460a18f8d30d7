package iptables

import (
	"math"
	"net/netip"
	"strconv"

	"github.com/kproxy/kproxy/proxier"
)

// ruleBuilder writes one rule in exactly the form iptables-save prints it back (both
// iptables-nft and iptables-legacy 1.8.9 print the same), so a rendered chain can be
// compared with the kernel's byte for byte. The canonical order is: -s, -d, -i, -p,
// then matches in the order they were given, then the target. The header fields may
// be set in any order; matches and the target are written in call order.
//
// A builder is reused for every rule of a render to avoid garbage; String returns a
// fresh string and leaves the builder to be reset.
type ruleBuilder struct {
	src, dst       netip.Prefix
	srcNeg, dstNeg bool
	in             string
	inNeg          bool
	proto          proxier.Protocol
	body           []byte
	out            []byte
	scratch        []byte
}

// reset starts a new rule.
func (b *ruleBuilder) reset() *ruleBuilder {
	*b = ruleBuilder{body: b.body[:0], out: b.out[:0], scratch: b.scratch[:0]}
	return b
}

// source matches (or with neg, excludes) a source prefix. A /0 prefix matches every
// packet and iptables-save prints nothing for it, so it is left out; callers never
// negate one (see localMatch.matchesEverything).
func (b *ruleBuilder) source(p netip.Prefix, neg bool) *ruleBuilder {
	b.src, b.srcNeg = p.Masked(), neg
	return b
}

// destination matches a destination prefix, like source.
func (b *ruleBuilder) destination(p netip.Prefix, neg bool) *ruleBuilder {
	b.dst, b.dstNeg = p.Masked(), neg
	return b
}

// destinationAddr matches one destination address.
func (b *ruleBuilder) destinationAddr(a netip.Addr) *ruleBuilder {
	return b.destination(netip.PrefixFrom(a, a.BitLen()), false)
}

// sourceAddr matches one source address.
func (b *ruleBuilder) sourceAddr(a netip.Addr) *ruleBuilder {
	return b.source(netip.PrefixFrom(a, a.BitLen()), false)
}

// inInterface matches (or excludes) the input interface; a trailing "+" is a wildcard.
func (b *ruleBuilder) inInterface(name string, neg bool) *ruleBuilder {
	b.in, b.inNeg = name, neg
	return b
}

// local matches traffic from this node's pods, or with notLocal everything else.
// The caller checks m.implemented() first.
func (b *ruleBuilder) local(m localMatch, notLocal bool) *ruleBuilder {
	if m.src.IsValid() {
		return b.source(m.src, notLocal)
	}
	return b.inInterface(m.iface, notLocal)
}

// protocol matches the transport protocol.
func (b *ruleBuilder) protocol(p proxier.Protocol) *ruleBuilder {
	b.proto = p
	return b
}

// comment adds "-m comment --comment ...", quoted as iptables-save quotes it.
func (b *ruleBuilder) comment(s string) *ruleBuilder {
	b.body = append(b.body, " -m comment --comment "...)
	b.body = appendSaveString(b.body, s)
	return b
}

// commentParts is comment for a text made of pieces, saving the concatenation.
func (b *ruleBuilder) commentParts(parts ...string) *ruleBuilder {
	b.scratch = b.scratch[:0]
	for _, p := range parts {
		b.scratch = append(b.scratch, p...)
	}
	b.body = append(b.body, " -m comment --comment "...)
	b.body = appendSaveString(b.body, b.scratch)
	return b
}

// statistic adds a random match with a probability already in saved form.
func (b *ruleBuilder) statistic(probability string) *ruleBuilder {
	b.body = append(b.body, " -m statistic --mode random --probability "...)
	b.body = append(b.body, probability...)
	return b
}

// recent adds a -m recent match on list: "--set", or with seconds > 0 "--rcheck
// --seconds N --reap". tail holds the defaults iptables-save spells out ("--mask
// ... --rsource").
func (b *ruleBuilder) recent(list string, seconds int, tail string) *ruleBuilder {
	if seconds > 0 {
		b.body = append(b.body, " -m recent --rcheck --seconds "...)
		b.body = strconv.AppendInt(b.body, int64(seconds), 10)
		b.body = append(b.body, " --reap --name "...)
	} else {
		b.body = append(b.body, " -m recent --set --name "...)
	}
	b.body = append(b.body, list...)
	b.body = append(b.body, tail...)
	return b
}

// dport adds the protocol's own match with a destination port ("-m tcp --dport 80");
// the protocol must also be set with protocol.
func (b *ruleBuilder) dport(p proxier.Protocol, port uint16) *ruleBuilder {
	b.body = append(b.body, " -m "...)
	b.body = append(b.body, p.String()...)
	b.body = append(b.body, " --dport "...)
	b.body = strconv.AppendUint(b.body, uint64(port), 10)
	return b
}

// dportRange is dport for an inclusive range; lo < hi, and not the full range (which
// iptables-save would print without --dport).
func (b *ruleBuilder) dportRange(p proxier.Protocol, lo, hi uint16) *ruleBuilder {
	b.dport(p, lo)
	b.body = append(b.body, ':')
	b.body = strconv.AppendUint(b.body, uint64(hi), 10)
	return b
}

// match appends canonical match text verbatim, e.g. "-m addrtype --dst-type LOCAL".
func (b *ruleBuilder) match(s string) *ruleBuilder {
	b.body = append(b.body, ' ')
	b.body = append(b.body, s...)
	return b
}

// jump ends the rule with -j chain.
func (b *ruleBuilder) jump(c Chain) *ruleBuilder {
	b.body = append(b.body, " -j "...)
	b.body = append(b.body, c...)
	return b
}

// verdict ends the rule with a built-in target and its options ("DROP",
// "REJECT --reject-with icmp-port-unreachable").
func (b *ruleBuilder) verdict(target string) *ruleBuilder {
	b.body = append(b.body, " -j "...)
	b.body = append(b.body, target...)
	return b
}

// dnat ends the rule with a DNAT to an endpoint ("10.0.0.1:80", "[fd00::1]:80").
func (b *ruleBuilder) dnat(ep netip.AddrPort) *ruleBuilder {
	b.body = append(b.body, " -j DNAT --to-destination "...)
	b.body = ep.AppendTo(b.body)
	return b
}

// String assembles the rule.
func (b *ruleBuilder) String() string {
	out := b.out[:0]
	if b.src.IsValid() && (b.src.Bits() > 0 || b.srcNeg) {
		out = appendNeg(out, b.srcNeg)
		out = append(out, " -s "...)
		out = b.src.AppendTo(out)
	}
	if b.dst.IsValid() && (b.dst.Bits() > 0 || b.dstNeg) {
		out = appendNeg(out, b.dstNeg)
		out = append(out, " -d "...)
		out = b.dst.AppendTo(out)
	}
	if b.in != "" {
		out = appendNeg(out, b.inNeg)
		out = append(out, " -i "...)
		out = append(out, b.in...)
	}
	if b.proto != 0 {
		out = append(out, " -p "...)
		out = append(out, b.proto.String()...)
	}
	out = append(out, b.body...)
	b.out = out
	if len(out) == 0 {
		return ""
	}
	return string(out[1:])
}

func appendNeg(b []byte, neg bool) []byte {
	if neg {
		return append(b, " !"...)
	}
	return b
}

// appendSaveString appends a free-text value the way libxtables' xtables_save_string
// prints it: bare when it is non-empty and made of [A-Za-z0-9_-] only, otherwise in
// double quotes with ", \ and ' escaped by a backslash. iptables-restore reads either
// form back to the same value.
func appendSaveString[T string | []byte](b []byte, s T) []byte {
	bare := len(s) > 0
	for i := 0; i < len(s) && bare; i++ {
		bare = isBareSaveChar(s[i])
	}
	if bare {
		return append(b, s...)
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\', '\'':
			b = append(b, '\\', c)
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

func isBareSaveChar(c byte) bool {
	return c == '_' || c == '-' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

// probabilityText formats kube-proxy's balancing probability 1/n the way
// iptables-save prints it back. kube-proxy writes "%0.10f" of 1/n; xt_statistic keeps
// it as a 31-bit fraction (rounded to nearest) and iptables-save prints that with 11
// decimals, so 1/3 comes back as 0.33333333349.
func probabilityText(n int) string {
	written, _ := strconv.ParseFloat(strconv.FormatFloat(1/float64(n), 'f', 10, 64), 64)
	stored := math.Round(written * 0x80000000)
	return strconv.FormatFloat(stored/0x80000000, 'f', 11, 64)
}

// probabilityCache memoises probabilityText; a render asks for the same few values
// hundreds of thousands of times.
type probabilityCache []string

func (c *probabilityCache) get(n int) string {
	for len(*c) <= n {
		*c = append(*c, probabilityText(max(len(*c), 1)))
	}
	return (*c)[n]
}
