package ipvs

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// IPVS's generic netlink dump of a virtual server's real servers (linux/ip_vs.h).
const (
	ipvsCmdGetDest = 8

	ipvsDestAttrActiveConns = 7
	ipvsDestAttrInactConns  = 8
)

// dumpRealServers lists the real servers of vs through the generic netlink socket,
// appending them to out. moby/ipvs's GetDestinations decodes every statistics
// counter of every destination into freshly allocated values; a full sync reads
// all 10,000 virtual servers' lists, and that decoding was two thirds of it. This
// reads only what RealServer holds, into reused buffers. A missing virtual server
// has no real servers, like the kernel's dump says.
//
// The caller holds n.genl's lock.
func (n *Netlink) dumpRealServers(vs VSKey, out []RealServer) ([]RealServer, error) {
	b := &n.genl.req
	b.reset(n.genl)
	svc, err := n.startIPVSMsg(b, ipvsCmdGetDest, unix.NLM_F_DUMP, vs)
	if err != nil {
		return out, err
	}
	b.endNest(svc)
	b.endMsg()
	err = n.genl.dump(b, func(msg []byte) error {
		if len(msg) < unix.NLMSG_HDRLEN+4 {
			return fmt.Errorf("netlink: short destination message (%d bytes)", len(msg))
		}
		// Each message holds one destination: IPVS_CMD_ATTR_DEST, nested.
		return walkAttrs(msg[unix.NLMSG_HDRLEN+4:], func(typ uint16, v []byte) error {
			if typ != ipvsCmdAttrDest {
				return nil
			}
			rs, ok, err := parseDest(v, vs)
			if ok {
				out = append(out, rs)
			}
			return err
		})
	})
	return out, err
}

// parseDest decodes the attributes of one destination of vs.
func parseDest(attrs []byte, vs VSKey) (RealServer, bool, error) {
	var rs RealServer
	var addr netip.Addr
	var port uint16
	haveAddr := false
	err := walkAttrs(attrs, func(typ uint16, v []byte) error {
		switch typ {
		case ipvsDestAttrAddr:
			if vs.Addr.Is4() && len(v) >= 4 {
				addr, haveAddr = netip.AddrFrom4([4]byte(v[:4])), true
			} else if len(v) >= 16 {
				addr, haveAddr = netip.AddrFrom16([16]byte(v[:16])), true
			}
		case ipvsDestAttrPort:
			if len(v) >= 2 {
				port = binary.BigEndian.Uint16(v)
			}
		case ipvsDestAttrAddrFamily:
			if len(v) >= 2 && binary.NativeEndian.Uint16(v) != afOf(vs.Addr) {
				haveAddr = false // another family's destination (a tunnel): not kproxy's
			}
		case ipvsDestAttrWeight:
			rs.Weight = int(nativeU32(v))
		case ipvsDestAttrActiveConns:
			rs.ActiveConns = int(nativeU32(v))
		case ipvsDestAttrInactConns:
			rs.InactiveConns = int(nativeU32(v))
		}
		return nil
	})
	rs.Addr = netip.AddrPortFrom(addr, port)
	return rs, haveAddr && err == nil, err
}

func nativeU32(v []byte) uint32 {
	if len(v) < 4 {
		return 0
	}
	return binary.NativeEndian.Uint32(v)
}

// walkAttrs calls fn for each netlink attribute in b, with the type stripped of its
// flags.
func walkAttrs(b []byte, fn func(typ uint16, v []byte) error) error {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		if l < 4 || l > len(b) {
			return fmt.Errorf("netlink: malformed attribute (length %d of %d bytes)", l, len(b))
		}
		typ := binary.NativeEndian.Uint16(b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if err := fn(typ, b[4:l]); err != nil {
			return err
		}
		b = b[min(nlAlign(l), len(b)):]
	}
	return nil
}
