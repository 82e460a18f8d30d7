package netns

import (
	"fmt"
	"io"
	"net"
	"sync"
)

// Relay forwards every TCP connection accepted inside a namespace to an address the
// harness reaches from its own namespace: this is how a proxy inside a node namespace
// talks to an envtest API server listening on the host's loopback.
//
// A relayed connection ends on both sides as soon as either side ends, so a proxy that
// dies does not leave a watch open on the API server, and an API server that stops is
// seen by the proxy as a closed connection, as a real one would be.
type Relay struct {
	ln   net.Listener
	to   string
	mu   sync.Mutex
	conn map[net.Conn]struct{}
	done bool
	wg   sync.WaitGroup
}

// NewRelay listens on listenAddr (host:port) inside n and forwards each accepted
// connection to to. A connection accepted while to refuses is closed at once. Close
// the relay before closing n.
func (n *NS) NewRelay(listenAddr, to string) (*Relay, error) {
	ln, err := n.Listen("tcp", listenAddr)
	if err != nil {
		return nil, err
	}
	r := &Relay{ln: ln, to: to, conn: map[net.Conn]struct{}{}}
	r.wg.Go(r.accept)
	return r, nil
}

// Addr is where the relay listens inside the namespace.
func (r *Relay) Addr() net.Addr { return r.ln.Addr() }

// String names the relay for logs.
func (r *Relay) String() string { return fmt.Sprintf("relay %s -> %s", r.ln.Addr(), r.to) }

func (r *Relay) accept() {
	for {
		in, err := r.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", r.to)
		if err != nil {
			in.Close()
			continue
		}
		if !r.track(in, out) {
			return
		}
		r.wg.Go(func() { r.pipe(in, out) })
	}
}

// track records a connection pair; false when the relay is closing.
func (r *Relay) track(cs ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		r.conn[c] = struct{}{}
	}
	return true
}

// pipe copies both ways and closes both sides as soon as either direction ends.
func (r *Relay) pipe(in, out net.Conn) {
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			in.Close()
			out.Close()
			r.mu.Lock()
			delete(r.conn, in)
			delete(r.conn, out)
			r.mu.Unlock()
		})
	}
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = io.Copy(out, in); closeBoth() })
	_, _ = io.Copy(in, out)
	closeBoth()
	wg.Wait()
}

// Close stops accepting, closes every relayed connection and waits for the goroutines.
// Closing twice is harmless.
func (r *Relay) Close() {
	r.mu.Lock()
	r.done = true
	r.ln.Close()
	for c := range r.conn {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}
