package netns

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// probeRequest is the line clients send; servers answer any line, so its content only
// helps someone reading a packet capture.
const probeRequest = "probe\n"

// DialTCP connects from inside the namespace to addr, sends one line and returns the
// parsed answer. timeout bounds the whole exchange (connect and answer), as does ctx.
//
// Failures keep their cause reachable: errors.Is(err, syscall.ECONNREFUSED) for a refused
// connection, errors.Is(err, os.ErrDeadlineExceeded) for a timeout; [Classify] sorts them.
func (n *NS) DialTCP(ctx context.Context, addr netip.AddrPort, timeout time.Duration) (Reply, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := n.Dial(ctx, nil, "tcp", addr.String())
	if err != nil {
		return Reply{}, probeError("tcp", n, addr.String(), err)
	}
	defer c.Close()
	return exchange(ctx, c, bufio.NewReader(c), "tcp", n, addr.String())
}

// DialUDP sends one datagram from inside the namespace to addr and returns the parsed
// answer. The socket is connected, so an ICMP port unreachable surfaces as
// syscall.ECONNREFUSED rather than as a timeout.
func (n *NS) DialUDP(ctx context.Context, addr netip.AddrPort, timeout time.Duration) (Reply, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := n.Dial(ctx, nil, "udp", addr.String())
	if err != nil {
		return Reply{}, probeError("udp", n, addr.String(), err)
	}
	defer c.Close()
	return exchange(ctx, c, bufio.NewReader(c), "udp", n, addr.String())
}

// exchange sends the probe line on c and parses one answer line read through r, both
// bounded by ctx's deadline.
func exchange(ctx context.Context, c net.Conn, r *bufio.Reader, op string, from *NS, to string) (Reply, error) {
	if d, ok := ctx.Deadline(); ok {
		if err := c.SetDeadline(d); err != nil {
			return Reply{}, probeError(op, from, to, err)
		}
	}
	// Cancelling ctx unblocks the I/O below by moving the deadline into the past.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := c.Write([]byte(probeRequest)); err != nil {
		return Reply{}, probeError(op, from, to, err)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return Reply{}, probeError(op, from, to, err)
	}
	rep, err := ParseReply(line)
	if err != nil {
		return Reply{}, probeError(op, from, to, err)
	}
	return rep, nil
}

// Conn is a long-lived TCP connection opened by [NS.OpenTCP]. Each [Conn.Exchange] sends
// a line on the same connection, so a test can check that an established connection
// keeps reaching the same endpoint across proxier resyncs.
type Conn struct {
	ns   *NS
	to   string
	conn net.Conn
	r    *bufio.Reader
}

// OpenTCP connects from inside the namespace to addr and keeps the connection open until
// [Conn.Close] or until the namespace is closed. timeout and ctx bound the connect only.
func (n *NS) OpenTCP(ctx context.Context, addr netip.AddrPort, timeout time.Duration) (*Conn, error) {
	c, err := n.Dial(ctx, &net.Dialer{Timeout: timeout}, "tcp", addr.String())
	if err != nil {
		return nil, probeError("tcp", n, addr.String(), err)
	}
	conn := &Conn{ns: n, to: addr.String(), conn: c, r: bufio.NewReader(c)}
	if !n.track(conn) {
		c.Close()
		return nil, fmt.Errorf("%s: %w", n, ErrClosed)
	}
	return conn, nil
}

// Exchange sends one line and returns the parsed answer, waiting at most timeout.
// Exchanges on one Conn must not run concurrently.
func (c *Conn) Exchange(timeout time.Duration) (Reply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return exchange(ctx, c.conn, c.r, "tcp", c.ns, c.to)
}

// LocalAddr is the client side of the connection, to look it up in conntrack.
func (c *Conn) LocalAddr() netip.AddrPort {
	ap := c.conn.LocalAddr().(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Close closes the connection. Closing it again, or after its namespace closed it, is
// not an error.
func (c *Conn) Close() error {
	c.ns.untrack(c)
	if err := c.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}
