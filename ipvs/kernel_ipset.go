package ipvs

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ipsetADT adds and deletes set members over netlink. vishvananda/netlink can create,
// list and destroy every set type IPVS mode uses, but its add and delete always send a
// protocol attribute with a port, and the kernel's bitmap:port type rejects that
// ("invalid protocol", found on a 6.1 kernel): node ports could not be added. The
// encoding here sends exactly the attributes of the member's set type, like ipset(8).
type ipsetADT struct {
	sock *nl.SocketHandle
}

// newIPSetADT opens a netfilter netlink socket inside ns (the caller's namespace when
// ns is netns.None()).
func newIPSetADT(ns netns.NsHandle) (*ipsetADT, error) {
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, err
	}
	tv := nl.SocketTimeoutTv
	if err := s.SetSendTimeout(&tv); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.SetReceiveTimeout(&tv); err != nil {
		s.Close()
		return nil, err
	}
	return &ipsetADT{sock: &nl.SocketHandle{Socket: s}}, nil
}

func (a *ipsetADT) close() { a.sock.Close() }

// add adds a member; an existing member is an error (IPSET_ERR_EXIST).
func (a *ipsetADT) add(set string, e SetEntry) error { return a.do(nl.IPSET_CMD_ADD, set, e) }

// del deletes a member; a missing member is an error (IPSET_ERR_EXIST).
func (a *ipsetADT) del(set string, e SetEntry) error { return a.do(nl.IPSET_CMD_DEL, set, e) }

func (a *ipsetADT) do(cmd int, set string, e SetEntry) error {
	if len(set) > maxSetName {
		return fmt.Errorf("set name %q longer than %d characters", set, maxSetName)
	}
	req := &nl.NetlinkRequest{
		NlMsghdr: unix.NlMsghdr{
			Len:   uint32(unix.SizeofNlMsghdr),
			Type:  uint16(cmd | unix.NFNL_SUBSYS_IPSET<<8),
			Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK | unix.NLM_F_EXCL,
		},
		Sockets: map[int]*nl.SocketHandle{unix.NETLINK_NETFILTER: a.sock},
	}
	req.AddData(&nl.Nfgenmsg{NfgenFamily: uint8(unix.AF_INET), Version: nl.NFNETLINK_V0})
	req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_PROTOCOL, nl.Uint8Attr(nl.IPSET_PROTOCOL)))
	req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_SETNAME, nl.ZeroTerminated(set)))
	data := nl.NewRtAttr(nl.IPSET_ATTR_DATA|unix.NLA_F_NESTED, nil)
	if e.IP.IsValid() {
		data.AddChild(ipAttr(nl.IPSET_ATTR_IP, e.IP))
	}
	if e.Protocol != 0 || !e.IP.IsValid() {
		port := make([]byte, 2)
		binary.BigEndian.PutUint16(port, e.Port)
		data.AddChild(nl.NewRtAttr(nl.IPSET_ATTR_PORT|unix.NLA_F_NET_BYTEORDER, port))
	}
	if e.Protocol != 0 {
		data.AddChild(nl.NewRtAttr(nl.IPSET_ATTR_PROTO, nl.Uint8Attr(protoNum(e.Protocol))))
	}
	switch {
	case e.IP2.IsValid():
		data.AddChild(ipAttr(nl.IPSET_ATTR_IP2, e.IP2))
	case e.Net.IsValid():
		data.AddChild(ipAttr(nl.IPSET_ATTR_IP2, e.Net.Addr()))
		data.AddChild(nl.NewRtAttr(nl.IPSET_ATTR_CIDR2, nl.Uint8Attr(uint8(e.Net.Bits()))))
	}
	req.AddData(data)
	_, err := req.Execute(unix.NETLINK_NETFILTER, 0)
	return err
}

// ipAttr encodes an address as ipset's nested IP attribute.
func ipAttr(typ int, a netip.Addr) *nl.RtAttr {
	inner := nl.IPSET_ATTR_IPADDR_IPV4
	if a.Is6() {
		inner = nl.IPSET_ATTR_IPADDR_IPV6
	}
	attr := nl.NewRtAttr(typ|unix.NLA_F_NESTED, nil)
	attr.AddChild(nl.NewRtAttr(inner|unix.NLA_F_NET_BYTEORDER, a.AsSlice()))
	return attr
}
