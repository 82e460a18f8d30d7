package iptablestest

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Kinds of set dimensions.
type dimKind uint8

const (
	dimIP dimKind = iota
	dimNet
	dimPort
)

var setTypes = map[string][]dimKind{
	"hash:ip":         {dimIP},
	"hash:net":        {dimNet},
	"hash:ip,port":    {dimIP, dimPort},
	"hash:ip,port,ip": {dimIP, dimPort, dimIP},
	"hash:ip,port,net": {
		dimIP, dimPort, dimNet,
	},
	"hash:net,port": {dimNet, dimPort},
	"bitmap:port":   {dimPort},
}

// setKey is a normalised element: addresses in dimension order, the
// protocol and port of the port dimension, and the prefix length of the
// net dimension.
type setKey struct {
	a1, a2 netip.Addr
	proto  uint8
	port   uint16
	plen   int
}

// compiledSet indexes a Set for lookups that do not depend on its size.
type compiledSet struct {
	name   string
	dims   []dimKind
	family int
	// lens are the distinct prefix lengths of the net dimension, most
	// specific first, so the most specific element decides (nomatch).
	lens []int
	// netSlot is the address slot (0: a1, 1: a2) of the net dimension, or
	// -1 when the set has none.
	netSlot int
	entries map[setKey]bool // value: nomatch
	noProto bool            // bitmap:port elements have no protocol
}

// set returns the compiled set, compiling it on first use in this trace.
func (t *tracer) set(name string) (*compiledSet, error) {
	if cs, ok := t.sets[name]; ok {
		return cs, nil
	}
	s, ok := t.opts.IPSets[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNoSet, name)
	}
	cs, err := indexSet(name, s)
	if err != nil {
		return nil, err
	}
	t.sets[name] = cs
	return cs, nil
}

// indexSet validates a Set and indexes its elements.
func indexSet(name string, s Set) (*compiledSet, error) {
	dims, ok := setTypes[s.Type]
	if !ok {
		return nil, fmt.Errorf("ipset %q: %w", name, unsupportedf("set type %q", s.Type))
	}
	cs := &compiledSet{name: name, dims: dims, family: familyV4, netSlot: -1, entries: make(map[setKey]bool, len(s.Entries)), noProto: s.Type == "bitmap:port"}
	switch s.Family {
	case "", "inet":
	case "inet6":
		cs.family = familyV6
	default:
		return nil, fmt.Errorf("ipset %q: unknown family %q", name, s.Family)
	}
	if d := slices.Index(dims, dimNet); d >= 0 {
		cs.netSlot = 0
		for _, k := range dims[:d] {
			if k != dimPort {
				cs.netSlot++
			}
		}
	}
	for _, e := range s.Entries {
		if err := cs.addEntry(e); err != nil {
			return nil, fmt.Errorf("ipset %q: entry %q: %w", name, e, err)
		}
	}
	slices.Sort(cs.lens)
	slices.Reverse(cs.lens)
	return cs, nil
}

func (cs *compiledSet) addEntry(e string) error {
	toks, err := tokenize(e)
	if err != nil || len(toks) == 0 {
		return errors.New("malformed element")
	}
	nomatch := false
	for k := 1; k < len(toks); k++ {
		if !toks[k].quoted && toks[k].text == "nomatch" && toks[k-1].text != "comment" {
			nomatch = true
		}
	}
	parts := strings.Split(toks[0].text, ",")
	if len(parts) != len(cs.dims) {
		return fmt.Errorf("want %d comma-separated parts", len(cs.dims))
	}
	var key setKey
	key.plen = -1
	var ports []uint16
	addrs := 0
	for i, d := range cs.dims {
		switch d {
		case dimIP, dimNet:
			a, plen, err := cs.parseAddr(parts[i], d == dimNet)
			if err != nil {
				return err
			}
			if addrs == 0 {
				key.a1 = a
			} else {
				key.a2 = a
			}
			addrs++
			if d == dimNet {
				key.plen = plen
			}
		case dimPort:
			proto, ps, err := cs.parsePort(parts[i])
			if err != nil {
				return err
			}
			key.proto, ports = proto, ps
		}
	}
	if key.plen >= 0 && !slices.Contains(cs.lens, key.plen) {
		cs.lens = append(cs.lens, key.plen)
	}
	if ports == nil {
		cs.entries[key] = nomatch
		return nil
	}
	for _, p := range ports {
		key.port = p
		cs.entries[key] = nomatch
	}
	return nil
}

func (cs *compiledSet) parseAddr(s string, isNet bool) (netip.Addr, int, error) {
	var a netip.Addr
	var plen int
	if strings.Contains(s, "/") {
		if !isNet {
			return a, 0, fmt.Errorf("%q: networks are only valid in a net dimension", s)
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return a, 0, fmt.Errorf("invalid network %q", s)
		}
		a, plen = p.Masked().Addr(), p.Bits()
	} else {
		var err error
		if a, err = netip.ParseAddr(s); err != nil || a.Zone() != "" {
			return a, 0, fmt.Errorf("invalid address %q", s)
		}
		plen = a.BitLen()
	}
	if familyOf(a) != cs.family {
		return a, 0, fmt.Errorf("%s address in a %s set", familyName(familyOf(a)), familyName(cs.family))
	}
	return a, plen, nil
}

// maxPortRange bounds how many ports one range element may expand to.
const maxPortRange = 65536

// parsePort parses [PROTO:]PORT or [PROTO:]LO-HI; the protocol defaults to
// tcp, as in ipset.
func (cs *compiledSet) parsePort(s string) (uint8, []uint16, error) {
	var proto uint8 = 6
	if cs.noProto {
		proto = 0
	} else if p, port, ok := strings.Cut(s, ":"); ok {
		switch p {
		case "tcp":
			proto = 6
		case "udp":
			proto = 17
		case "sctp":
			proto = 132
		case "udplite":
			proto = 136
		default:
			return 0, nil, unsupportedf("protocol %q in a port dimension", p)
		}
		s = port
	}
	lo, hi, isRange := strings.Cut(s, "-")
	l, err := strconv.ParseUint(lo, 10, 16)
	if err != nil {
		return 0, nil, fmt.Errorf("invalid port %q", s)
	}
	h := l
	if isRange {
		if h, err = strconv.ParseUint(hi, 10, 16); err != nil || h < l {
			return 0, nil, fmt.Errorf("invalid port range %q", s)
		}
	}
	ports := make([]uint16, 0, min(int(h-l+1), maxPortRange))
	for p := l; p <= h; p++ {
		ports = append(ports, uint16(p))
	}
	return proto, ports, nil
}

// test looks the packet up; src[i] tells whether dimension i uses the
// source (true) or destination address/port. As in the kernel, a set with
// more dimensions than flags, or of the other family, does not match.
func (cs *compiledSet) test(c *evalCtx, src []bool, returnNomatch bool) (tri, error) {
	p := c.b.pkt
	if len(src) < len(cs.dims) || familyOf(p.dst) != cs.family {
		return no, nil
	}
	var key setKey
	key.plen = -1
	addrs := 0
	for i, d := range cs.dims {
		switch d {
		case dimIP, dimNet:
			a := p.dst
			if src[i] {
				a = p.src
			}
			if addrs == 0 {
				key.a1 = a
			} else {
				key.a2 = a
			}
			addrs++
		case dimPort:
			if !p.proto.hasPorts() {
				return no, nil
			}
			if !cs.noProto {
				key.proto = p.protoNum
			}
			key.port = p.dport
			if src[i] {
				if p.sport == 0 {
					return maybe, nil
				}
				key.port = p.sport
			}
		}
	}
	if cs.netSlot < 0 {
		_, ok := cs.entries[key]
		return triOf(ok), nil
	}
	exact := key
	for _, l := range cs.lens {
		key = exact
		slot := &key.a1
		if cs.netSlot == 1 {
			slot = &key.a2
		}
		pfx, err := slot.Prefix(l)
		if err != nil {
			continue
		}
		*slot = pfx.Addr()
		key.plen = l
		if nomatch, ok := cs.entries[key]; ok {
			return triOf(!nomatch || returnNomatch), nil
		}
	}
	return no, nil
}
