package scale

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/kproxy/kproxy/test/netns"
)

// probeTimeout bounds one probe connection. Before a service is programmed the client
// gets a quick "network unreachable" from the underlay, so timeouts are rare.
const probeTimeout = 500 * time.Millisecond

// probe opens a new TCP connection to addr, optionally exchanges one line with the echo
// server to learn which pod answered, and resets the connection (SO_LINGER 0) so no
// TIME_WAIT state builds up over thousands of probes. It must run on a thread inside
// the client namespace (see NS.Do): the socket is created on the calling thread. It
// returns the label of the pod ("" without exchange) and the connect time.
func probe(ctx context.Context, addr netip.AddrPort, exchange bool) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var d net.Dialer
	start := time.Now()
	c, err := d.DialContext(ctx, "tcp", addr.String())
	connect := time.Since(start)
	if err != nil {
		return "", 0, err
	}
	defer func() {
		_ = c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}()
	if !exchange {
		return "", connect, nil
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := c.Write([]byte("probe\n")); err != nil {
		return "", 0, err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", 0, err
	}
	rep, err := netns.ParseReply(line)
	if err != nil {
		return "", 0, err
	}
	return rep.Server, connect, nil
}

// errWaitTimeout is a wait that ran out of time.
var errWaitTimeout = errors.New("timed out")

// waitForLabel probes addr from ns every interval until the pod labelled want answers,
// and returns when it first did. alive is checked between probes so a proxy that dies
// ends the wait at once.
func waitForLabel(parent context.Context, ns *netns.NS, addr netip.AddrPort, want string, interval, timeout time.Duration, alive func() error) (time.Time, error) {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	var seen time.Time
	var last error
	err := ns.Do(func() error {
		for {
			label, _, err := probe(ctx, addr, true)
			if err == nil && label == want {
				seen = time.Now()
				return nil
			}
			if err == nil {
				err = fmt.Errorf("answered by %s", label)
			}
			last = err
			if err := alive(); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(interval):
			}
		}
	})
	if errors.Is(err, context.DeadlineExceeded) && parent.Err() == nil {
		return time.Time{}, fmt.Errorf("%w after %s waiting for %s at %s (last probe: %v)", errWaitTimeout, timeout, want, addr, last)
	}
	return seen, err
}

// connectTimes measures n TCP connect times to each target from ns, interleaving the
// targets so machine noise spreads evenly over them, with gap between rounds. Failed
// connects are counted, not timed.
func connectTimes(ctx context.Context, ns *netns.NS, targets []netip.AddrPort, n int, gap time.Duration) ([][]time.Duration, int, error) {
	out := make([][]time.Duration, len(targets))
	failed := 0
	err := ns.Do(func() error {
		for range n {
			for i, t := range targets {
				_, d, err := probe(ctx, t, false)
				if err != nil {
					failed++
					continue
				}
				out[i] = append(out[i], d)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(gap):
			}
		}
		return nil
	})
	return out, failed, err
}
