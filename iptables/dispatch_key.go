package iptables

import (
	"encoding/binary"
	"net/netip"
	"strconv"

	"github.com/kproxy/kproxy/proxier"
)

// dispatchKey is what a dispatch tree branches on, as a string of 4-bit nibbles read
// from the most significant end: a destination address (8 nibbles for IPv4, 32 for
// IPv6), or a protocol and destination port (one nibble for the protocol, four for
// the port). Keys of one tree all have the same kind, so they order like the
// addresses (ports) they encode.
type dispatchKey struct{ hi, lo uint64 }

// compare orders keys.
func (k dispatchKey) compare(o dispatchKey) int {
	switch {
	case k.hi < o.hi:
		return -1
	case k.hi > o.hi:
		return 1
	case k.lo < o.lo:
		return -1
	case k.lo > o.lo:
		return 1
	}
	return 0
}

// nibble returns nibble i (0 is the most significant).
func (k dispatchKey) nibble(i int) int {
	if i < 16 {
		return int(k.hi >> (60 - 4*uint(i)) & 0xf)
	}
	return int(k.lo >> (60 - 4*uint(i-16)) & 0xf)
}

// prefix keeps the first n nibbles and zeroes the rest: the lowest key under the
// prefix.
func (k dispatchKey) prefix(n int) dispatchKey {
	return dispatchKey{hi: k.hi & maskFirst(n), lo: k.lo & maskFirst(n-16)}
}

// last sets every nibble after the first n: the highest key under the prefix.
func (k dispatchKey) last(n int) dispatchKey {
	return dispatchKey{hi: k.hi | ^maskFirst(n), lo: k.lo | ^maskFirst(n-16)}
}

// maskFirst keeps the first n nibbles of a 64-bit half (n clipped to 0..16).
func maskFirst(n int) uint64 {
	switch {
	case n <= 0:
		return 0
	case n >= 16:
		return ^uint64(0)
	}
	return ^(^uint64(0) >> (4 * uint(n)))
}

// commonNibbles returns how many leading nibbles a and b share.
func commonNibbles(a, b dispatchKey, limit int) int {
	n := 0
	for n < limit && a.nibble(n) == b.nibble(n) {
		n++
	}
	return n
}

// keySpace is one kind of dispatch key: how keys are built, how long they are, and
// how a rule matches all keys under a prefix.
type keySpace uint8

const (
	keyIPv4 keySpace = iota
	keyIPv6
	keyPort
)

// nibbles is the key length.
func (s keySpace) nibbles() int {
	switch s {
	case keyIPv4:
		return 8
	case keyIPv6:
		return 32
	}
	return 5
}

// addrKey encodes a destination address.
func addrKey(a netip.Addr) dispatchKey {
	if a.Is4() {
		b := a.As4()
		return dispatchKey{hi: uint64(binary.BigEndian.Uint32(b[:])) << 32}
	}
	b := a.As16()
	return dispatchKey{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:])}
}

// portKey encodes a protocol and destination port.
func portKey(p proxier.Protocol, port uint16) dispatchKey {
	return dispatchKey{hi: uint64(protoIndex(p))<<60 | uint64(port)<<44}
}

// protoIndex packs the protocols into the first nibble of a port key.
func protoIndex(p proxier.Protocol) int {
	switch p {
	case proxier.ProtocolUDP:
		return 1
	case proxier.ProtocolSCTP:
		return 2
	}
	return 0
}

var protoByIndex = [...]proxier.Protocol{proxier.ProtocolTCP, proxier.ProtocolUDP, proxier.ProtocolSCTP}

// addr decodes an address key of space s.
func (s keySpace) addr(k dispatchKey) netip.Addr {
	if s == keyIPv4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(k.hi>>32))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], k.hi)
	binary.BigEndian.PutUint64(b[8:], k.lo)
	return netip.AddrFrom16(b)
}

// portRange decodes the protocol and port range of a port-key prefix of n nibbles.
func portRange(k dispatchKey, n int) (proxier.Protocol, uint16, uint16) {
	proto := protoByIndex[min(k.nibble(0), len(protoByIndex)-1)]
	lo := uint16(k.prefix(n).hi >> 44)
	hi := uint16(k.last(n).hi >> 44)
	return proto, lo, hi
}

// describe names the prefix for chain-name hashing: "10.96.0.0/16", "fd00::/64",
// "tcp:30000-30015".
func (s keySpace) describe(k dispatchKey, n int) string {
	if s == keyPort {
		proto, lo, hi := portRange(k, n)
		return proto.String() + ":" + strconv.Itoa(int(lo)) + "-" + strconv.Itoa(int(hi))
	}
	return netip.PrefixFrom(s.addr(k.prefix(n)), 4*n).String()
}

// branchRule is the rule in a parent chain that sends packets whose key starts with
// the prefix to child.
func (s keySpace) branchRule(b *ruleBuilder, k dispatchKey, n int, child Chain) string {
	b.reset()
	if s == keyPort {
		proto, lo, hi := portRange(k, n)
		b.protocol(proto)
		if n > 1 {
			b.dportRange(proto, lo, hi)
		}
	} else {
		b.destination(netip.PrefixFrom(s.addr(k.prefix(n)), 4*n), false)
	}
	return b.jump(child).String()
}
