package netns

import (
	"bufio"
	"io"
	"net"
)

// ServeTCP starts a TCP echo server on port, on every address of the namespace. For each
// line a client sends, it answers one line "<label> <server-ip> <client-ip>" (see
// [ParseReply]); a connection stays open until the client or [Server.Close] ends it, which
// is what "established connections survive a resync" tests need.
func (n *NS) ServeTCP(port uint16) (*Server, error) {
	s, err := n.newServer("tcp", port)
	if err != nil {
		return nil, err
	}
	listeners, err := s.listenTCP(n)
	if err != nil {
		return nil, err
	}
	for _, l := range listeners {
		s.goServe(func() { s.acceptTCP(l) })
	}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

// acceptTCP accepts until the listener is closed.
func (s *Server) acceptTCP(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		if !s.addConn(c) {
			c.Close()
			return
		}
		s.goServe(func() { s.echoTCP(c) })
	}
}

// echoTCP answers every line on c until the peer closes it or the server stops.
func (s *Server) echoTCP(c net.Conn) {
	defer s.dropConn(c)
	defer c.Close()
	line := replyLine(s.ns.Label, addrOf(c.LocalAddr()), addrOf(c.RemoteAddr()))
	r := bufio.NewScanner(c)
	for r.Scan() {
		if _, err := c.Write(line); err != nil {
			return
		}
	}
}

// listenTCP opens the server's TCP listeners, one per address family, inside n.
func (s *Server) listenTCP(n *NS) ([]net.Listener, error) {
	var listeners []net.Listener
	err := s.listenBoth("tcp", func(network, addr string) (io.Closer, error) {
		l, err := n.Listen(network, addr)
		if err == nil {
			listeners = append(listeners, l)
		}
		return l, err
	})
	return listeners, err
}
