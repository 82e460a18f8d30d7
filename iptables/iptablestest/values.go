package iptablestest

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Address families of a dump, as seen in its addresses.
const (
	familyUnknown = 0
	familyV4      = 4
	familyV6      = 6
)

func familyOf(a netip.Addr) int {
	if a.Is4() {
		return familyV4
	}
	return familyV6
}

func familyName(f int) string {
	switch f {
	case familyV4:
		return "IPv4"
	case familyV6:
		return "IPv6"
	}
	return "unknown"
}

// ipMask is an address with an arbitrary (possibly non-contiguous) mask, as
// accepted by both iptables-legacy and iptables-nft: "10.0.0.0/8",
// "0.0.0.5/0.0.0.15", "fd00::/64", "::5/::f".
type ipMask struct {
	addr, mask [16]byte
	n          int // bytes in use: 4 or 16
}

// parseIPMask parses ADDR[/BITS|/MASK]. A missing mask means a host match.
func parseIPMask(s string) (ipMask, error) {
	addrPart, maskPart, hasMask := strings.Cut(s, "/")
	a, err := netip.ParseAddr(addrPart)
	if err != nil || a.Zone() != "" {
		return ipMask{}, fmt.Errorf("invalid address %q", s)
	}
	var m ipMask
	m.n = 16
	if a.Is4() {
		m.n = 4
	}
	ab := a.AsSlice()
	copy(m.addr[:], ab)
	bitsTotal := m.n * 8
	switch {
	case !hasMask:
		setPrefixMask(m.mask[:m.n], bitsTotal)
	case strings.ContainsAny(maskPart, ".:"):
		mk, err := netip.ParseAddr(maskPart)
		if err != nil || mk.Zone() != "" || mk.Is4() != a.Is4() {
			return ipMask{}, fmt.Errorf("invalid mask in %q", s)
		}
		copy(m.mask[:], mk.AsSlice())
	default:
		n, err := strconv.Atoi(maskPart)
		if err != nil || n < 0 || n > bitsTotal {
			return ipMask{}, fmt.Errorf("invalid prefix length in %q", s)
		}
		setPrefixMask(m.mask[:m.n], n)
	}
	for i := 0; i < m.n; i++ {
		m.addr[i] &= m.mask[i]
	}
	return m, nil
}

func setPrefixMask(b []byte, n int) {
	for i := range b {
		switch {
		case n >= 8:
			b[i] = 0xff
			n -= 8
		case n > 0:
			b[i] = byte(0xff << (8 - n))
			n = 0
		default:
			b[i] = 0
		}
	}
}

func (m ipMask) family() int {
	if m.n == 4 {
		return familyV4
	}
	return familyV6
}

// contains reports whether a matches under the mask. Addresses of the other
// family never match.
func (m ipMask) contains(a netip.Addr) bool {
	if familyOf(a) != m.family() {
		return false
	}
	b := a.As16()
	off := 0
	if m.n == 4 {
		off = 12
	}
	for i := 0; i < m.n; i++ {
		if b[off+i]&m.mask[i] != m.addr[i] {
			return false
		}
	}
	return true
}

// apply masks a with the mask, as -m recent --mask does before a lookup.
func (m ipMask) apply(a netip.Addr) netip.Addr {
	if familyOf(a) != m.family() {
		return a
	}
	if m.n == 4 {
		b := a.As4()
		for i := range b {
			b[i] &= m.mask[i]
		}
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	for i := range b {
		b[i] &= m.mask[i]
	}
	return netip.AddrFrom16(b)
}

// String renders the mask as iptables-save would: a prefix length when the
// mask is contiguous, the mask as an address otherwise.
func (m ipMask) String() string {
	var a netip.Addr
	var mk netip.Addr
	if m.n == 4 {
		a = netip.AddrFrom4([4]byte(m.addr[:4]))
		mk = netip.AddrFrom4([4]byte(m.mask[:4]))
	} else {
		a = netip.AddrFrom16(m.addr)
		mk = netip.AddrFrom16(m.mask)
	}
	ones, contiguous := 0, true
	seenZero := false
	for i := 0; i < m.n; i++ {
		for bit := 7; bit >= 0; bit-- {
			if m.mask[i]&(1<<bit) != 0 {
				if seenZero {
					contiguous = false
				}
				ones++
			} else {
				seenZero = true
			}
		}
	}
	if contiguous {
		return fmt.Sprintf("%s/%d", a, ones)
	}
	return fmt.Sprintf("%s/%s", a, mk)
}

// portRange is an inclusive port range; a single port has lo == hi.
type portRange struct{ lo, hi uint16 }

func (r portRange) contains(p uint16) bool { return p >= r.lo && p <= r.hi }

// String renders the range as iptables-save does ("80" or "80:90").
func (r portRange) String() string {
	if r.lo == r.hi {
		return strconv.Itoa(int(r.lo))
	}
	return fmt.Sprintf("%d:%d", r.lo, r.hi)
}

// parsePort parses a numeric port. Service names are refused: iptables-save
// always prints numbers, and resolving names would make tests depend on the
// machine's /etc/services.
func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("invalid port %q", s)
	}
	return uint16(n), nil
}

// parsePortRange parses PORT, LO:HI, :HI or LO:.
func parsePortRange(s string) (portRange, error) {
	lo, hi, isRange := strings.Cut(s, ":")
	if !isRange {
		p, err := parsePort(s)
		return portRange{p, p}, err
	}
	r := portRange{0, 65535}
	var err error
	if lo != "" {
		if r.lo, err = parsePort(lo); err != nil {
			return r, err
		}
	}
	if hi != "" {
		if r.hi, err = parsePort(hi); err != nil {
			return r, err
		}
	}
	if r.lo > r.hi {
		return r, fmt.Errorf("invalid port range %q (min > max)", s)
	}
	return r, nil
}

// parseUint32 parses a mark-like number: decimal, 0x hex or 0 octal.
func parseUint32(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return 0, fmt.Errorf("invalid value %q", s)
	}
	return uint32(n), nil
}

// parseMarkMask parses VALUE[/MASK]; the mask defaults to all ones.
func parseMarkMask(s string) (value, mask uint32, err error) {
	v, m, hasMask := strings.Cut(s, "/")
	if value, err = parseUint32(v); err != nil {
		return 0, 0, err
	}
	mask = 0xffffffff
	if hasMask {
		if mask, err = parseUint32(m); err != nil {
			return 0, 0, err
		}
	}
	return value, mask, nil
}

// parseNATAddr parses the address part of DNAT/SNAT targets:
// ADDR, ADDR:PORT, [ADDR6] or [ADDR6]:PORT. Ranges are refused: kproxy never
// renders them and picking one address would hide the choice.
func parseNATAddr(s string) (netip.Addr, uint16, bool, error) {
	if strings.ContainsAny(s, "-") {
		return netip.Addr{}, 0, false, unsupportedf("address or port ranges in %q", s)
	}
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return netip.Addr{}, 0, false, fmt.Errorf("invalid address %q", s)
		}
		a, err := netip.ParseAddr(s[1:end])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return netip.Addr{}, 0, false, fmt.Errorf("invalid address %q", s)
		}
		rest := s[end+1:]
		if rest == "" {
			return a, 0, false, nil
		}
		if !strings.HasPrefix(rest, ":") {
			return netip.Addr{}, 0, false, fmt.Errorf("invalid address %q", s)
		}
		p, err := parsePort(rest[1:])
		return a, p, err == nil, err
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return netip.Addr{}, 0, false, fmt.Errorf("invalid address %q", s)
		}
		return a, 0, false, nil
	}
	host, port, ok := strings.Cut(s, ":")
	if !ok {
		return netip.Addr{}, 0, false, fmt.Errorf("invalid address %q", s)
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !a.Is4() {
		return netip.Addr{}, 0, false, fmt.Errorf("invalid address %q", s)
	}
	p, err := parsePort(port)
	return a, p, err == nil, err
}
