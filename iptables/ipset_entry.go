package iptables

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ipsetComponent is one part of an ipset element, as the set type lists them
// ("hash:ip,port,ip" has ip, port, ip).
type ipsetComponent int

const (
	compIP ipsetComponent = iota
	compNet
	compPort
)

// ipsetComponents returns the element layout of a set type.
func ipsetComponents(typ string) ([]ipsetComponent, error) {
	method, dims, ok := strings.Cut(typ, ":")
	if !ok || (method != "hash" && method != "bitmap") {
		return nil, fmt.Errorf("ipset: unsupported set type %q", typ)
	}
	var out []ipsetComponent
	for _, d := range strings.Split(dims, ",") {
		switch d {
		case "ip":
			out = append(out, compIP)
		case "net":
			out = append(out, compNet)
		case "port":
			out = append(out, compPort)
		default:
			return nil, fmt.Errorf("ipset: unsupported set type %q", typ)
		}
	}
	if method == "bitmap" && (len(out) != 1 || out[0] != compPort) {
		return nil, fmt.Errorf("ipset: unsupported set type %q", typ)
	}
	return out, nil
}

// ipsetElement is a parsed element. Fields a type does not use stay zero.
type ipsetElement struct {
	ip      netip.Prefix // first ip/net component
	proto   uint8        // 0 for bitmap:port
	port    uint16
	hasPort bool
	ip2     netip.Prefix // second ip/net component
	has2    bool
}

// ipsetProtoNames maps protocol numbers to the names ipset prints.
var ipsetProtoNames = map[uint8]string{6: "tcp", 17: "udp", 132: "sctp", 136: "udplite"}

// parseIPSetElement parses an element in `ipset save` syntax for a set type.
func parseIPSetElement(typ, s string) (ipsetElement, error) {
	comps, err := ipsetComponents(typ)
	if err != nil {
		return ipsetElement{}, err
	}
	parts := strings.Split(s, ",")
	if len(parts) != len(comps) {
		return ipsetElement{}, fmt.Errorf("ipset: element %q does not match type %s", s, typ)
	}
	var e ipsetElement
	addrs := 0
	for i, c := range comps {
		p := parts[i]
		switch c {
		case compIP, compNet:
			pfx, err := parseIPSetAddr(p, c == compNet)
			if err != nil {
				return ipsetElement{}, fmt.Errorf("ipset: element %q: %w", s, err)
			}
			if addrs == 0 {
				e.ip = pfx
			} else {
				e.ip2, e.has2 = pfx, true
			}
			addrs++
		case compPort:
			proto, port, err := parseIPSetPort(p, strings.HasPrefix(typ, "bitmap:"))
			if err != nil {
				return ipsetElement{}, fmt.Errorf("ipset: element %q: %w", s, err)
			}
			e.proto, e.port, e.hasPort = proto, port, true
		}
	}
	return e, nil
}

// parseIPSetAddr parses an address, or for net components a prefix.
func parseIPSetAddr(s string, net bool) (netip.Prefix, error) {
	if net && strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// parseIPSetPort parses "proto:port" or a bare port (TCP, or no protocol at all for
// bitmap:port).
func parseIPSetPort(s string, bitmap bool) (uint8, uint16, error) {
	protoName, portStr, hasProto := strings.Cut(s, ":")
	if !hasProto {
		portStr, protoName = s, "tcp"
		if bitmap {
			protoName = ""
		}
	}
	var proto uint8
	if protoName != "" {
		found := false
		for n, name := range ipsetProtoNames {
			if name == protoName {
				proto, found = n, true
			}
		}
		if !found {
			return 0, 0, fmt.Errorf("unsupported protocol %q", protoName)
		}
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return 0, 0, fmt.Errorf("bad port %q", portStr)
	}
	return proto, uint16(port), nil
}

// format prints the element the way `ipset save` does: host prefixes without their
// length, ports as proto:port (a bare port for bitmap:port).
func (e ipsetElement) format(typ string) string {
	comps, _ := ipsetComponents(typ)
	var b strings.Builder
	addrs := 0
	for i, c := range comps {
		if i > 0 {
			b.WriteByte(',')
		}
		switch c {
		case compIP, compNet:
			p := e.ip
			if addrs > 0 {
				p = e.ip2
			}
			addrs++
			b.WriteString(p.Addr().String())
			if c == compNet && p.Bits() != p.Addr().BitLen() {
				b.WriteByte('/')
				b.WriteString(strconv.Itoa(p.Bits()))
			}
		case compPort:
			if e.proto != 0 {
				name := ipsetProtoNames[e.proto]
				if name == "" {
					name = strconv.Itoa(int(e.proto))
				}
				b.WriteString(name)
				b.WriteByte(':')
			}
			b.WriteString(strconv.Itoa(int(e.port)))
		}
	}
	return b.String()
}

// CanonicalIPSetEntry returns entry as `ipset save` prints it for a set of type typ,
// so that entries written by the renderer and entries read from the kernel compare
// equal as strings.
func CanonicalIPSetEntry(typ, entry string) (string, error) {
	e, err := parseIPSetElement(typ, entry)
	if err != nil {
		return "", err
	}
	return e.format(typ), nil
}
