package reliability

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kproxy/kproxy/test/netns"
)

const (
	// probeInterval is how often the prober opens a new connection to each target.
	probeInterval = 10 * time.Millisecond
	// probeTimeout bounds one attempt: connect, one line out, one line back. It is
	// generous because on a loaded 2-core machine the test process itself can stall
	// for seconds; a lost packet is caught anyway, by the SYN retransmission count.
	probeTimeout = 5 * time.Second
	// slowProbe is an attempt slow enough that a packet was probably lost and
	// retransmitted; those are listed in the report but do not fail the test.
	slowProbe = 900 * time.Millisecond
)

// target is a service address the prober connects to.
type target struct {
	name string
	addr netip.AddrPort
}

// attempt is one probe connection.
type attempt struct {
	target string
	start  time.Time
	took   time.Duration
	server string // the pod that answered
	err    error
}

// event is something the test did, kept to place failures on the timeline.
type event struct {
	at   time.Time
	what string
}

// prober opens a connection from a client namespace to every target every
// probeInterval, each attempt in its own goroutine so a slow one never delays the
// schedule, and records every outcome.
type prober struct {
	ns      *netns.NS
	targets []target
	begin   time.Time
	synRetr int // the namespace's TCPSynRetrans when probing started
	stop    chan struct{}
	loop    sync.WaitGroup
	probes  sync.WaitGroup

	mu       sync.Mutex
	attempts map[string]int
	servers  map[string]map[string]int
	failures []attempt
	slow     []attempt
	events   []event
}

// startProber starts probing; the test must call Stop.
func startProber(t *testing.T, ns *netns.NS, targets ...target) *prober {
	p := &prober{ns: ns, targets: targets, begin: time.Now(), stop: make(chan struct{}),
		attempts: map[string]int{}, servers: map[string]map[string]int{}}
	var err error
	if p.synRetr, err = synRetransmits(ns); err != nil {
		t.Fatal(err)
	}
	p.loop.Go(p.run)
	t.Cleanup(p.Stop)
	return p
}

func (p *prober) run() {
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		for _, tg := range p.targets {
			p.probes.Go(func() { p.record(probe(p.ns, tg)) })
		}
	}
}

// probe opens one connection to tg, exchanges a line with the pod and resets the
// connection (SO_LINGER 0), so no TIME_WAIT piles up over thousands of probes. The
// caller times it.
func probe(ns *netns.NS, tg target) attempt {
	a := attempt{target: tg.name, start: time.Now()}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	c, err := ns.Dial(ctx, nil, "tcp", tg.addr.String())
	if err != nil {
		a.err = err
		return a
	}
	defer func() {
		_ = c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}()
	dl, _ := ctx.Deadline()
	_ = c.SetDeadline(dl)
	if _, err := c.Write([]byte("probe\n")); err != nil {
		a.err = err
		return a
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err == nil {
		var rep netns.Reply
		rep, err = netns.ParseReply(line)
		a.server = rep.Server
	}
	a.err = err
	return a
}

func (p *prober) record(a attempt) {
	a.took = time.Since(a.start)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempts[a.target]++
	switch {
	case a.err != nil:
		p.failures = append(p.failures, a)
	case a.took > slowProbe:
		p.slow = append(p.slow, a)
	}
	if a.err == nil {
		if p.servers[a.target] == nil {
			p.servers[a.target] = map[string]int{}
		}
		p.servers[a.target][a.server]++
	}
}

// Mark records an event of the scenario on the prober's timeline.
func (p *prober) Mark(what string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, event{time.Now(), what})
}

// Stop stops probing and waits for the attempts in flight. Calling it again is
// harmless.
func (p *prober) Stop() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.loop.Wait()
	p.probes.Wait()
}

// RequireNoFailures stops the prober and fails the test for every failed attempt,
// saying when (relative to the scenario's events) and how it failed. It also fails
// when a target got less than half the attempts the schedule asks for, which would
// make "no failures" meaningless.
func (p *prober) RequireNoFailures(t *testing.T) {
	t.Helper()
	p.Stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	minAttempts := int(time.Since(p.begin) / probeInterval / 2)
	total := 0
	for _, tg := range p.targets {
		n := p.attempts[tg.name]
		total += n
		t.Logf("prober: %s (%s): %d attempts, %d failed, answered by %v", tg.name, tg.addr, n, p.failedFor(tg.name), p.servers[tg.name])
		if n < minAttempts {
			t.Errorf("prober: only %d attempts to %s, want at least %d: the client could not keep up", n, tg.name, minAttempts)
		}
	}
	for _, a := range p.slow {
		t.Logf("prober: slow attempt to %s at %s: %s (%s)", a.target, p.when(a.start), a.took.Round(time.Millisecond), p.context(a.start))
	}
	for i, a := range p.failures {
		if i == 20 {
			t.Errorf("prober: ... and %d more failures", len(p.failures)-i)
			break
		}
		t.Errorf("prober: attempt to %s failed at %s after %s: %s: %v (%s)", a.target, p.when(a.start),
			a.took.Round(time.Millisecond), netns.Classify(a.err), a.err, p.context(a.start))
	}
	if len(p.failures) > 0 {
		t.Errorf("prober: %d of %d connections failed; want none", len(p.failures), total)
	}
	// A connection that succeeded only because the kernel sent its SYN again lost a
	// packet on the way: that is a failure the timeout would hide.
	n, err := synRetransmits(p.ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("prober: %d SYN retransmissions", n-p.synRetr)
	if n != p.synRetr {
		t.Errorf("prober: the client retransmitted %d SYNs: connection attempts lost packets", n-p.synRetr)
	}
}

// synRetransmits reads TCPSynRetrans, the number of SYNs the kernel sent again, in
// ns.
func synRetransmits(ns *netns.NS) (int, error) {
	out, err := ns.Exec(context.Background(), "cat", "/proc/net/netstat")
	if err != nil {
		return 0, err
	}
	lines := strings.Split(string(out), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		for j, name := range names {
			if name == "TCPSynRetrans" && j < len(values) {
				return strconv.Atoi(values[j])
			}
		}
	}
	return 0, fmt.Errorf("no TCPSynRetrans in %s's /proc/net/netstat", ns)
}

func (p *prober) failedFor(target string) int {
	n := 0
	for _, a := range p.failures {
		if a.target == target {
			n++
		}
	}
	return n
}

// when is a time relative to the prober's start.
func (p *prober) when(at time.Time) string {
	return "+" + at.Sub(p.begin).Round(time.Millisecond).String()
}

// context names the last event before at, and how long before.
func (p *prober) context(at time.Time) string {
	last := "before any event"
	for _, e := range p.events {
		if e.at.After(at) {
			break
		}
		last = fmt.Sprintf("%s after %q", at.Sub(e.at).Round(time.Millisecond), e.what)
	}
	return last
}
