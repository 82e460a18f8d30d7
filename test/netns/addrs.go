package netns

import (
	"fmt"
	"net/netip"
)

// Family selects IPv4 or IPv6, so dual-stack tests can loop over [Families] instead of
// duplicating every assertion.
type Family uint8

const (
	// V4 is IPv4.
	V4 Family = 4
	// V6 is IPv6.
	V6 Family = 6
)

// Families lists both families, IPv4 first.
var Families = []Family{V4, V6}

// String returns "IPv4" or "IPv6", which reads well as a subtest name.
func (f Family) String() string {
	switch f {
	case V4:
		return "IPv4"
	case V6:
		return "IPv6"
	}
	return fmt.Sprintf("Family(%d)", uint8(f))
}

// Of returns the family of addr.
func Of(addr netip.Addr) Family {
	if addr.Unmap().Is4() {
		return V4
	}
	return V6
}

// Addrs is a dual-stack address pair.
type Addrs struct {
	V4, V6 netip.Addr
}

// IP returns the address of family f.
func (a Addrs) IP(f Family) netip.Addr {
	if f == V6 {
		return a.V6
	}
	return a.V4
}

// IPs returns both addresses, IPv4 first.
func (a Addrs) IPs() []netip.Addr { return []netip.Addr{a.V4, a.V6} }

// AddrPort returns the address of family f with port, ready for a Dial* call.
func (a Addrs) AddrPort(f Family, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(a.IP(f), port)
}

// Prefixes is a dual-stack prefix pair.
type Prefixes struct {
	V4, V6 netip.Prefix
}

// Prefix returns the prefix of family f.
func (p Prefixes) Prefix(f Family) netip.Prefix {
	if f == V6 {
		return p.V6
	}
	return p.V4
}

// All returns both prefixes, IPv4 first.
func (p Prefixes) All() []netip.Prefix { return []netip.Prefix{p.V4, p.V6} }

// hostAddrs returns the addresses with host number host in both prefixes. The plan keeps
// host numbers below 256, so only the last byte changes.
func (p Prefixes) hostAddrs(host int) Addrs {
	return Addrs{V4: nthAddr(p.V4, host), V6: nthAddr(p.V6, host)}
}

// nthAddr returns the n-th address of prefix p (n < 256).
func nthAddr(p netip.Prefix, n int) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	b[len(b)-1] = byte(n)
	a, _ := netip.AddrFromSlice(b)
	return a
}
