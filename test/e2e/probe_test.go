package e2e

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kproxy/kproxy/test/netns"
)

// Probe timeouts. An answer inside the topology takes a millisecond or two; okTimeout
// leaves room for a loaded machine. dropTimeout is how long a DROP is waited for: long
// enough that a late answer would have arrived, short enough to keep the suite fast.
const (
	okTimeout   = 3 * time.Second
	dropTimeout = 800 * time.Millisecond
	// quickly bounds a REJECT of a UDP datagram: the ICMP error comes back in well
	// under this.
	quickly = 500 * time.Millisecond
	// quicklyTCP bounds a REJECT of a TCP connect: the first or the second SYN must be
	// refused. Between namespaces the ICMP error to the first SYN is processed in the
	// same softirq that sent the SYN, while connect() still owns the socket, and the
	// kernel then only records it as a soft error (TcpExtLockDroppedIcmps; seen with
	// IPv6 on this host): the retransmitted SYN one second later is refused at once.
	// A DROP is never refused, so the assertion still tells REJECT from DROP.
	quicklyTCP = 1500 * time.Millisecond
)

// proto is the transport a probe uses.
type proto string

const (
	tcp proto = "tcp"
	udp proto = "udp"
)

// result is one real connection's outcome, as logged.
type result struct {
	netns.Reply
	Outcome netns.Outcome
	Err     error
	Took    time.Duration
}

// probe makes one real connection (or datagram exchange) from `from` to addr and logs
// what happened, so CI logs show every connection the suite made.
func probe(t *testing.T, from *netns.NS, p proto, addr netip.AddrPort, timeout time.Duration) result {
	t.Helper()
	start := time.Now()
	var rep netns.Reply
	var err error
	if p == udp {
		rep, err = from.DialUDP(t.Context(), addr, timeout)
	} else {
		rep, err = from.DialTCP(t.Context(), addr, timeout)
	}
	r := result{Reply: rep, Outcome: netns.Classify(err), Err: err, Took: time.Since(start)}
	logResult(t, from.Label, p, addr, r)
	return r
}

func logResult(t *testing.T, from string, p proto, addr netip.AddrPort, r result) {
	t.Helper()
	took := r.Took.Round(10 * time.Microsecond)
	if r.Outcome == netns.OK {
		t.Logf("%s %s -> %s: answered by %s (%s), which saw client %s [%v]", p, from, addr, r.Server, r.ServerIP, r.ClientIP, took)
		return
	}
	t.Logf("%s %s -> %s: %s [%v]: %v", p, from, addr, r.Outcome, took, r.Err)
}

// spread makes n connections from `from` to addr, requires every one to be answered by
// one of want, and returns how often each pod answered. With all set, every pod of want
// must answer at least once. check, when not nil, looks at each answer (what client
// address the pod saw, say) and returns a complaint or "".
func spread(t *testing.T, from *netns.NS, p proto, addr netip.AddrPort, n int, want []*netns.Pod, all bool, check func(netns.Reply) string) map[string]int {
	t.Helper()
	allowed := map[string]bool{}
	for _, pod := range want {
		allowed[pod.Label] = true
	}
	seen := map[string]int{}
	for range n {
		r := probe(t, from, p, addr, okTimeout)
		if r.Outcome != netns.OK {
			t.Errorf("%s %s -> %s: %s, want an answer from one of %v", p, from.Label, addr, r.Outcome, netns.Labels(want))
			continue
		}
		seen[r.Server]++
		if !allowed[r.Server] {
			t.Errorf("%s %s -> %s: answered by %s, want one of %v", p, from.Label, addr, r.Server, netns.Labels(want))
		}
		if check != nil {
			if msg := check(r.Reply); msg != "" {
				t.Errorf("%s %s -> %s: answered by %s: %s", p, from.Label, addr, r.Server, msg)
			}
		}
	}
	t.Logf("%s %s -> %s: %d connections answered by %s", p, from.Label, addr, n, netns.FormatTally(seen))
	if all {
		for _, pod := range want {
			if seen[pod.Label] == 0 {
				t.Errorf("%s %s -> %s: %s never answered in %d connections (%s)", p, from.Label, addr, pod.Label, n, netns.FormatTally(seen))
			}
		}
	}
	return seen
}

// expectOutcome makes one connection and requires the given failure class; for
// Refused it also requires the refusal to be quick (a REJECT, not a retry storm).
func expectOutcome(t *testing.T, from *netns.NS, p proto, addr netip.AddrPort, want netns.Outcome) {
	t.Helper()
	timeout := okTimeout
	if want == netns.Timeout {
		timeout = dropTimeout
	}
	r := probe(t, from, p, addr, timeout)
	if r.Outcome != want {
		t.Errorf("%s %s -> %s: got %s (%v), want %s", p, from.Label, addr, r.Outcome, describe(r), want)
		return
	}
	limit := quickly
	if p == tcp {
		limit = quicklyTCP
	}
	if want == netns.Refused && r.Took > limit {
		t.Errorf("%s %s -> %s: refused only after %v, want a REJECT within %v", p, from.Label, addr, r.Took, limit)
	}
}

func describe(r result) string {
	if r.Outcome == netns.OK {
		return "answered by " + r.Server
	}
	return r.Err.Error()
}

// sawClient checks that the pod saw the client's own address (no SNAT).
func sawClient(ip netip.Addr) func(netns.Reply) string {
	return func(r netns.Reply) string {
		if r.ClientIP != ip {
			return "saw client " + r.ClientIP.String() + ", want the real client " + ip.String()
		}
		return ""
	}
}

// sawPod checks what an endpoint saw of a connection from pod: its own address, except
// when the connection came back to pod itself (hairpin), which is masqueraded to the
// node's bridge address.
func sawPod(pod *netns.Pod, f netns.Family) func(netns.Reply) string {
	return func(r netns.Reply) string {
		if r.Server == pod.Label {
			return sawOneOf(pod.Node.BridgeAddrs.IP(f))(r)
		}
		return sawClient(pod.IP(f))(r)
	}
}

// sawOneOf checks that the pod saw one of ips (masqueraded to a node address).
func sawOneOf(ips ...netip.Addr) func(netns.Reply) string {
	return func(r netns.Reply) string {
		if slices.Contains(ips, r.ClientIP) {
			return ""
		}
		return "saw client " + r.ClientIP.String() + ", want one of the node's addresses " + addrList(ips)
	}
}

func addrList(ips []netip.Addr) string {
	var s []string
	for _, ip := range ips {
		s = append(s, ip.String())
	}
	return strings.Join(s, ", ")
}
