package netns

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
)

// Server is a running echo server started by [NS.ServeTCP], [NS.ServeUDP] or
// [NS.ServeHTTP]. It listens on the wildcard address of both families, so it answers on
// every address the namespace has, including ones added later.
type Server struct {
	ns    *NS
	proto string
	port  uint16

	wg      sync.WaitGroup
	once    sync.Once
	mu      sync.Mutex
	stopped bool
	closers []io.Closer           // listeners and packet sockets
	conns   map[net.Conn]struct{} // accepted TCP connections
}

// Port is the port the server listens on.
func (s *Server) Port() uint16 { return s.port }

// String describes the server for failure messages.
func (s *Server) String() string {
	return fmt.Sprintf("%s server on port %d in %s", s.proto, s.port, s.ns)
}

// Close stops the server: listeners and every accepted connection are closed, so clients
// holding long-lived connections see them end. It waits until the serving goroutines have
// returned. Servers are also closed with their namespace; calling Close twice is fine.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		s.ns.untrack(s)
		s.mu.Lock()
		s.stopped = true
		var errs []error
		for _, c := range s.closers {
			if e := c.Close(); e != nil && !errors.Is(e, net.ErrClosed) {
				errs = append(errs, e)
			}
		}
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
		if len(errs) > 0 {
			err = fmt.Errorf("netns: stop %s: %w", s, errors.Join(errs...))
		}
	})
	return err
}

// newServer validates the port and prepares a server record.
func (n *NS) newServer(proto string, port uint16) (*Server, error) {
	if port == 0 {
		return nil, fmt.Errorf("netns: %s server in %s: port 0 is not supported, pick a fixed port", proto, n)
	}
	return &Server{ns: n, proto: proto, port: port, conns: map[net.Conn]struct{}{}}, nil
}

// listenBoth opens one socket per family through open, so neither family sees the other
// as IPv4-mapped addresses. On failure everything opened so far is closed.
func (s *Server) listenBoth(network string, open func(network, addr string) (io.Closer, error)) error {
	p := strconv.Itoa(int(s.port))
	for _, la := range [][2]string{{network + "4", "0.0.0.0:" + p}, {network + "6", "[::]:" + p}} {
		c, err := open(la[0], la[1])
		if err != nil {
			for _, c := range s.closers {
				c.Close()
			}
			s.closers = nil
			return err
		}
		s.closers = append(s.closers, c)
	}
	return nil
}

// start registers the server with its namespace; if the namespace closed meanwhile, the
// server is stopped and ErrClosed returned.
func (s *Server) start() error {
	if !s.ns.track(s) {
		s.Close()
		return fmt.Errorf("%s: %w", s.ns, ErrClosed)
	}
	return nil
}

// go runs fn as a serving goroutine that Close waits for.
func (s *Server) goServe(fn func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
}

// addConn records an accepted connection so Close can end it; it reports false if the
// server is already stopping.
func (s *Server) addConn(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

// dropConn forgets a finished connection.
func (s *Server) dropConn(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

// addrOf extracts the IP of a socket address of any kind the servers see.
func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
