package netns

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// ServeHTTP starts an HTTP server on port, on every address of the namespace. Every
// request, whatever its path or method, is answered 200 with the body
// "<label> <server-ip> <client-ip>\n", like the TCP and UDP servers.
func (n *NS) ServeHTTP(port uint16) (*Server, error) {
	s, err := n.newServer("http", port)
	if err != nil {
		return nil, err
	}
	listeners, err := s.listenTCP(n)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.answerHTTP(w, r) }),
		ReadHeaderTimeout: 10 * time.Second,
	}
	// Closing the http.Server closes its listeners and every open connection.
	s.closers = append(s.closers, httpCloser{srv})
	for _, l := range listeners {
		s.goServe(func() { _ = srv.Serve(l) })
	}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

// answerHTTP writes the identity line for one request.
func (s *Server) answerHTTP(w http.ResponseWriter, r *http.Request) {
	var local netip.Addr
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		local = addrOf(a)
	}
	var remote netip.Addr
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		remote = ap.Addr()
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(replyLine(s.ns.Label, local, remote))
}

// httpCloser adapts http.Server to io.Closer, treating "already closed" as success.
type httpCloser struct{ srv *http.Server }

func (h httpCloser) Close() error {
	if err := h.srv.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
