package e2e

import (
	"bufio"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/kproxy/kproxy/test/netns"
)

// udpFlow is one connected UDP socket: every datagram it sends belongs to the same
// conntrack flow, which is what a stale-conntrack test needs (a new DialUDP would be a
// new flow and would follow the new rules anyway).
type udpFlow struct {
	from *netns.NS
	addr netip.AddrPort
	conn net.Conn
}

func openUDPFlow(t *testing.T, from *netns.NS, addr netip.AddrPort) *udpFlow {
	t.Helper()
	c, err := from.Dial(t.Context(), nil, "udp", addr.String())
	if err != nil {
		t.Fatalf("udp socket from %s to %s: %v", from.Label, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	t.Logf("udp %s: one socket %s -> %s for the whole scenario", from.Label, c.LocalAddr(), addr)
	return &udpFlow{from: from, addr: addr, conn: c}
}

// ask sends one datagram and returns the answer. A datagram lost on the way is retried
// on the same socket, so the flow never changes.
func (u *udpFlow) ask(t *testing.T) result {
	t.Helper()
	var r result
	for try := range 3 {
		start := time.Now()
		r = u.exchange()
		r.Took = time.Since(start)
		logResult(t, u.from.Label+" (same socket, try "+string(rune('1'+try))+")", udp, u.addr, r)
		if r.Outcome != netns.Timeout {
			return r
		}
	}
	return r
}

func (u *udpFlow) exchange() result {
	if err := u.conn.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return result{Outcome: netns.Failed, Err: err}
	}
	if _, err := u.conn.Write([]byte("probe\n")); err != nil {
		return result{Outcome: netns.Classify(err), Err: err}
	}
	line, err := bufio.NewReader(u.conn).ReadString('\n')
	if err != nil {
		return result{Outcome: netns.Classify(err), Err: err}
	}
	rep, err := netns.ParseReply(line)
	if err != nil {
		return result{Outcome: netns.Failed, Err: err}
	}
	return result{Reply: rep}
}
