package kernel

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/kproxy/kproxy/test/netns"
)

// okTimeout bounds one answered connection on a loaded machine; an answer inside the
// topology takes a millisecond or two.
const okTimeout = 3 * time.Second

// probe makes one real TCP connection from `from` to addr and logs the outcome, so CI
// logs show every connection the package made.
func probe(t *testing.T, from *netns.NS, addr netip.AddrPort, timeout time.Duration) (netns.Reply, netns.Outcome) {
	t.Helper()
	start := time.Now()
	rep, err := from.DialTCP(t.Context(), addr, timeout)
	out := netns.Classify(err)
	took := time.Since(start).Round(10 * time.Microsecond)
	if out == netns.OK {
		t.Logf("tcp %s -> %s: answered by %s [%v]", from.Label, addr, rep.Server, took)
	} else {
		t.Logf("tcp %s -> %s: %s [%v]: %v", from.Label, addr, out, took, err)
	}
	return rep, out
}

// servedOnlyBy makes n connections and requires every one to be answered by one of
// want.
func servedOnlyBy(t *testing.T, from *netns.NS, addr netip.AddrPort, n int, want ...*netns.Pod) {
	t.Helper()
	seen := map[string]int{}
	for range n {
		rep, out := probe(t, from, addr, okTimeout)
		if out != netns.OK {
			t.Errorf("tcp %s -> %s: %s, want an answer from %v", from.Label, addr, out, netns.Labels(want))
			continue
		}
		seen[rep.Server]++
		if !slices.ContainsFunc(want, func(p *netns.Pod) bool { return p.Label == rep.Server }) {
			t.Errorf("tcp %s -> %s: answered by %s, want one of %v", from.Label, addr, rep.Server, netns.Labels(want))
		}
	}
	t.Logf("tcp %s -> %s: %d connections answered by %s", from.Label, addr, n, netns.FormatTally(seen))
}

// firstAnswer connects to addr every interval until a connection is answered and
// returns when that connection started; it fails the test after limit. Only the
// number of unanswered attempts is logged, not each one.
func firstAnswer(t *testing.T, from *netns.NS, addr netip.AddrPort, interval, limit time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(limit)
	failures := map[netns.Outcome]int{}
	for {
		start := time.Now()
		rep, err := from.DialTCP(t.Context(), addr, interval)
		if err == nil {
			t.Logf("tcp %s -> %s: answered by %s after %v unanswered attempts", from.Label, addr, rep.Server, failures)
			return start
		}
		failures[netns.Classify(err)]++
		if time.Now().After(deadline) {
			t.Fatalf("tcp %s -> %s: no answer within %v (%v)", from.Label, addr, limit, failures)
		}
		if d := interval - time.Since(start); d > 0 {
			time.Sleep(d)
		}
	}
}
