package netns

import (
	"context"
	"fmt"
	"net"
)

// Listen is net.Listen inside the namespace. The socket stays in the namespace for its
// whole life, so the listener can be served from any goroutine.
func (n *NS) Listen(network, address string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() error {
		var err error
		l, err = net.Listen(network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netns: listen %s %s in %s: %w", network, address, n, err)
	}
	return l, nil
}

// ListenPacket is net.ListenPacket inside the namespace.
func (n *NS) ListenPacket(network, address string) (net.PacketConn, error) {
	var c net.PacketConn
	err := n.Do(func() error {
		var err error
		c, err = net.ListenPacket(network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netns: listen %s %s in %s: %w", network, address, n, err)
	}
	return c, nil
}

// Dial is d.DialContext from inside the namespace (a nil d means the zero net.Dialer).
// The socket is created and connected on a thread in the namespace; the returned
// connection works from any goroutine. Errors are returned as the net package makes them,
// so errors.Is(err, syscall.ECONNREFUSED) and [Classify] work on them.
func (n *NS) Dial(ctx context.Context, d *net.Dialer, network, address string) (net.Conn, error) {
	if d == nil {
		d = &net.Dialer{}
	}
	var c net.Conn
	err := n.Do(func() error {
		var err error
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}
