package netns

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// ServeUDP starts a UDP echo server on port, on every address of the namespace. Each
// datagram is answered with one datagram "<label> <server-ip> <client-ip>\n".
//
// The answer is sent from the exact address the request was sent to (IP_PKTINFO /
// IPV6_PKTINFO), not from whatever source the routing table would pick: a node with an
// uplink and a bridge address must answer a request to its uplink address from that
// address, or conntrack and connected client sockets would drop the reply.
func (n *NS) ServeUDP(port uint16) (*Server, error) {
	s, err := n.newServer("udp", port)
	if err != nil {
		return nil, err
	}
	var conns []dstConn
	err = s.listenBoth("udp", func(network, addr string) (io.Closer, error) {
		pc, err := n.ListenPacket(network, addr)
		if err != nil {
			return nil, err
		}
		c, err := newDstConn(network, pc)
		if err != nil {
			pc.Close()
			return nil, fmt.Errorf("netns: udp server in %s: %w", n, err)
		}
		conns = append(conns, c)
		return c, nil
	})
	if err != nil {
		return nil, err
	}
	for _, c := range conns {
		s.goServe(func() { s.echoUDP(c) })
	}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

// echoUDP answers datagrams until the socket is closed.
func (s *Server) echoUDP(c dstConn) {
	buf := make([]byte, 64<<10)
	for {
		_, dst, src, err := c.readFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. a queued ICMP error; keep serving
		}
		// A failed send is the client's problem (it will time out); keep serving.
		_ = c.writeFrom(replyLine(s.ns.Label, dst, addrOf(src)), dst, src)
	}
}

// dstConn is a UDP socket that reports each datagram's destination address and can send
// from a chosen local address.
type dstConn interface {
	io.Closer
	readFrom(b []byte) (n int, dst netip.Addr, src net.Addr, err error)
	writeFrom(b []byte, src netip.Addr, dst net.Addr) error
}

// newDstConn enables destination reporting on a udp4 or udp6 socket.
func newDstConn(network string, pc net.PacketConn) (dstConn, error) {
	if network == "udp4" {
		c := ipv4.NewPacketConn(pc)
		if err := c.SetControlMessage(ipv4.FlagDst, true); err != nil {
			return nil, fmt.Errorf("enable IP_PKTINFO: %w", err)
		}
		return dstConn4{c}, nil
	}
	c := ipv6.NewPacketConn(pc)
	if err := c.SetControlMessage(ipv6.FlagDst, true); err != nil {
		return nil, fmt.Errorf("enable IPV6_RECVPKTINFO: %w", err)
	}
	return dstConn6{c}, nil
}

// dstConn4 is the IPv4 dstConn.
type dstConn4 struct{ c *ipv4.PacketConn }

func (d dstConn4) Close() error { return d.c.Close() }

func (d dstConn4) readFrom(b []byte) (int, netip.Addr, net.Addr, error) {
	n, cm, src, err := d.c.ReadFrom(b)
	if err != nil || cm == nil {
		return n, netip.Addr{}, src, err
	}
	dst, _ := netip.AddrFromSlice(cm.Dst)
	return n, dst.Unmap(), src, nil
}

func (d dstConn4) writeFrom(b []byte, src netip.Addr, dst net.Addr) error {
	var cm *ipv4.ControlMessage
	if src.IsValid() {
		cm = &ipv4.ControlMessage{Src: src.AsSlice()}
	}
	_, err := d.c.WriteTo(b, cm, dst)
	return err
}

// dstConn6 is the IPv6 dstConn.
type dstConn6 struct{ c *ipv6.PacketConn }

func (d dstConn6) Close() error { return d.c.Close() }

func (d dstConn6) readFrom(b []byte) (int, netip.Addr, net.Addr, error) {
	n, cm, src, err := d.c.ReadFrom(b)
	if err != nil || cm == nil {
		return n, netip.Addr{}, src, err
	}
	dst, _ := netip.AddrFromSlice(cm.Dst)
	return n, dst, src, nil
}

func (d dstConn6) writeFrom(b []byte, src netip.Addr, dst net.Addr) error {
	var cm *ipv6.ControlMessage
	if src.IsValid() {
		cm = &ipv6.ControlMessage{Src: src.AsSlice()}
	}
	_, err := d.c.WriteTo(b, cm, dst)
	return err
}
