package ipvs

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kproxy/kproxy/iptables"
	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/proxier/conntrack"
	"github.com/kproxy/kproxy/proxier/metrics"
)

// harness is a Proxier on fakes.
type harness struct {
	p       *Proxier
	k       *Fake
	ipt     *iptables.Fake
	ct      *conntrack.Fake
	m       *metrics.Metrics
	clock   *clocktesting.FakeClock
	options Options
}

func newHarness(t testing.TB, plan PlanOptions, k *Fake) *harness {
	t.Helper()
	if k == nil {
		k = &Fake{}
		k.SetHostAddresses(hostAddrs()...)
	}
	h := &harness{k: k, ipt: iptables.NewFake(iptables.FakeOptions{}), ct: conntrack.NewFake(), m: metrics.New(),
		clock: clocktesting.NewFakeClock(time.Unix(1_700_000_000, 0))}
	// Destroying a set that a glue rule still matches fails, as in the kernel.
	k.SetInUse(func(set string) bool {
		for _, fam := range []iptables.Family{iptables.IPv4, iptables.IPv6} {
			for _, table := range []iptables.Table{iptables.TableNAT, iptables.TableFilter} {
				for _, c := range append(append([]iptables.Chain{}, natChains...), filterChains...) {
					rules, _ := h.ipt.Rules(fam, table, c)
					for _, r := range rules {
						if strings.Contains(r, "--match-set "+set+" ") {
							return true
						}
					}
				}
			}
		}
		return false
	})
	h.options = Options{Kernel: k, Glue: h.ipt, Plan: plan, Conntrack: h.ct, Metrics: h.m,
		Logger: logr.Discard(), Clock: h.clock, DrainCheckInterval: -1}
	if tt, ok := t.(*testing.T); ok {
		h.options.Logger = testr.NewWithOptions(tt, testr.Options{Verbosity: 2})
	}
	p, err := New(context.Background(), h.options)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.p = p
	return h
}

// restart replaces the proxier by a new one on the same kernel, as after a crash.
func (h *harness) restart(t *testing.T) {
	t.Helper()
	p, err := New(context.Background(), h.options)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.p = p
}

func (h *harness) sync(t testing.TB, s *proxier.State, cs proxier.ChangeSet) {
	t.Helper()
	if err := h.p.Sync(context.Background(), s, cs); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

// assertConverged checks that the kernel holds exactly the desired state.
func (h *harness) assertConverged(t *testing.T, s *proxier.State, plan PlanOptions) {
	t.Helper()
	plan.HostAddresses = hostAddrs()
	want := Desired(s, plan)
	got := h.k.Snapshot(want.Family)
	if !got.Equal(want) {
		t.Fatalf("kernel state:\n%s\nwant:\n%s", dump(got), dump(want))
	}
}

// changed returns a change set naming the given service ports.
func changed(ports ...*proxier.ServicePort) proxier.ChangeSet {
	cs := proxier.ChangeSet{Services: map[proxier.ServicePortName]struct{}{}}
	for _, sp := range ports {
		cs.Services[sp.Name] = struct{}{}
	}
	return cs
}

func sampleState() *proxier.State {
	return proxier.NewState(testNode(),
		svcPort("web", 80, "10.96.0.10,fd00:96::10", eps("10.244.1.5:8080@local", "10.244.2.5:8080", "[fd00:244:1::5]:8080@local")),
		svcPort("np", 80, "10.96.0.11", nodePort(30080), externalLocal, healthCheckNodePort(32000), eps("10.244.1.6:8080@local")),
		svcPort("dns", 53, "10.96.0.12", proto(proxier.ProtocolUDP), eps("10.244.2.7:5353", "10.244.2.8:5353")),
		svcPort("lb", 443, "10.96.0.13", lbIngress("192.0.2.10", proxier.IPModeVIP), sourceRanges("203.0.113.0/24"), eps("10.244.2.9:8443")),
		svcPort("ext", 80, "10.96.0.14", externalIPs("203.0.113.7"), affinity(time.Hour), eps("10.244.2.10:80")),
	)
}

func TestProxierFirstSyncAndNoopResync(t *testing.T) {
	h := newHarness(t, PlanOptions{}, nil)
	s := sampleState()
	h.sync(t, s, proxier.FullSync())
	h.assertConverged(t, s, PlanOptions{})

	for _, name := range []string{"net/ipv4/vs/conntrack", "net/ipv4/vs/expire_nodest_conn", "net/ipv4/vs/expire_quiescent_template", "net/ipv4/ip_forward"} {
		if v, _ := h.k.Sysctl(context.Background(), name); v != "1" {
			t.Errorf("sysctl %s = %q, want 1", name, v)
		}
	}
	rules, ok := h.ipt.Rules(iptables.IPv4, iptables.TableNAT, iptables.ChainPrerouting)
	if !ok || len(rules) != 1 || !strings.Contains(rules[0], "-j KUBE-SERVICES") {
		t.Errorf("PREROUTING = %q, want the jump to KUBE-SERVICES", rules)
	}
	if rules, _ := h.ipt.Rules(iptables.IPv4, iptables.TableFilter, chainIPVSOutFilter); len(rules) != 1 {
		t.Errorf("KUBE-IPVS-OUT-FILTER = %q, want the load balancer's node deny rule", rules)
	}

	h.k.ResetStats()
	before := h.ipt.Stats()
	h.sync(t, s, proxier.FullSync())
	if st := h.k.Stats(); st.Writes != 0 {
		t.Errorf("full resync of an unchanged state wrote %d times: %v", st.Writes, st.Calls)
	}
	if n := h.ipt.Stats().RestoreCalls - before.RestoreCalls; n != 1 {
		t.Errorf("full resync restored the glue %d times, want 1", n)
	}

	h.k.ResetStats()
	before = h.ipt.Stats()
	sp, _ := s.Lookup(proxier.ServicePortName{ServiceName: proxier.ServiceName{Namespace: "ns", Name: "web"}, Port: "p", Protocol: proxier.ProtocolTCP})
	h.sync(t, s, changed(sp))
	if st := h.k.Stats(); st.Total() != 0 {
		t.Errorf("partial sync of an unchanged service made %d calls: %v", st.Total(), st.Calls)
	}
	if n := h.ipt.Stats().RestoreCalls - before.RestoreCalls; n != 0 {
		t.Errorf("partial sync of an unchanged service restored the glue %d times", n)
	}
	if got := testutil.ToFloat64(h.m.NetlinkOperations.WithLabelValues(OpAddDestination)); got == 0 {
		t.Errorf("netlink operations were not counted")
	}
}

func TestProxierPartialSyncs(t *testing.T) {
	plan := PlanOptions{}
	h := newHarness(t, plan, nil)
	web := svcPort("web", 80, "10.96.0.10", eps("10.244.2.5:8080"))
	h.sync(t, proxier.NewState(testNode(), web), proxier.FullSync())

	steps := []struct {
		name  string
		ports []*proxier.ServicePort
		cs    func(before, after []*proxier.ServicePort) proxier.ChangeSet
	}{
		{"add a node port service", []*proxier.ServicePort{web, svcPort("np", 81, "10.96.0.11", nodePort(30081), eps("10.244.2.6:80"))}, nil},
		{"make it Local with a local endpoint", []*proxier.ServicePort{web, svcPort("np", 81, "10.96.0.11", nodePort(30081), externalLocal, eps("10.244.1.6:80@local", "10.244.2.6:80"))}, nil},
		{"add a load balancer sharing the web cluster IP's service", []*proxier.ServicePort{web, svcPort("lb", 443, "10.96.0.12", lbIngress("192.0.2.10", proxier.IPModeVIP), sourceRanges("198.18.0.0/16"))}, nil},
		{"delete everything but web", []*proxier.ServicePort{web}, nil},
		{"UDP with affinity", []*proxier.ServicePort{web, svcPort("dns", 53, "10.96.0.20", proto(proxier.ProtocolUDP), affinity(time.Minute), eps("10.244.2.7:53"))}, nil},
	}
	prev := []*proxier.ServicePort{web}
	for _, st := range steps {
		names := map[proxier.ServicePortName]struct{}{}
		for _, sp := range append(append([]*proxier.ServicePort{}, prev...), st.ports...) {
			names[sp.Name] = struct{}{}
		}
		s := proxier.NewState(testNode(), st.ports...)
		h.sync(t, s, proxier.ChangeSet{Services: names})
		t.Run(st.name, func(t *testing.T) { h.assertConverged(t, s, plan) })
		prev = st.ports
	}
	// A full sync after all these partial ones finds nothing to do.
	h.k.ResetStats()
	h.sync(t, proxier.NewState(testNode(), prev...), proxier.FullSync())
	if w := h.k.Stats().Writes; w != 0 {
		t.Errorf("full sync after partial ones wrote %d times: partial syncs left the kernel off", w)
	}
}

func TestProxierOneEndpointChangeAtScale(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 services")
	}
	h := newHarness(t, PlanOptions{}, nil)
	s := bigState(10_000)
	h.sync(t, s, proxier.FullSync())

	var best time.Duration = time.Hour
	for i := range 5 {
		next, cs := replaceEndpoint(s, 1000*i+7, netip.AddrFrom4([4]byte{10, 250, 0, byte(i + 1)}))
		h.k.ResetStats()
		start := time.Now()
		h.sync(t, next, cs)
		best = min(best, time.Since(start))
		st := h.k.Stats()
		// Add the new real server, drain the old one, read its counters, delete it.
		if st.Writes != 3 || st.Total() != 4 {
			t.Errorf("one endpoint change made %d calls (%d writes), want 4 (3): %v", st.Total(), st.Writes, st.Calls)
		}
		s = next
	}
	t.Logf("one endpoint change at 10,000 services x 10 endpoints: best partial sync %v", best)
	if !raceEnabled && best > 20*time.Millisecond {
		t.Errorf("partial sync took %v, want < 20ms", best)
	}
	h.assertConverged(t, s, PlanOptions{})
}

func TestProxierGracefulTermination(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, PlanOptions{GracefulTimeout: 10 * time.Minute}, nil)
	a, b := "10.244.2.5:8080", "10.244.2.6:8080"
	key := VSKey{Addr: netip.MustParseAddr("10.96.0.10"), Protocol: proxier.ProtocolTCP, Port: 80}
	state := func(endpoints ...string) (*proxier.State, proxier.ChangeSet) {
		sp := svcPort("web", 80, "10.96.0.10", eps(endpoints...))
		return proxier.NewState(testNode(), sp), changed(sp)
	}
	real := func(addr string) (RealServer, bool) {
		vs := h.k.Snapshot(proxier.IPv4).Servers[key]
		return vs.Real(netip.MustParseAddrPort(addr))
	}
	s, _ := state(a, b)
	h.sync(t, s, proxier.FullSync())

	// b carries a connection: removing it drains it instead of deleting it.
	if err := h.k.SetConnections(key, netip.MustParseAddrPort(b), 1, 0); err != nil {
		t.Fatal(err)
	}
	s, cs := state(a)
	h.sync(t, s, cs)
	if r, ok := real(b); !ok || r.Weight != 0 {
		t.Fatalf("removed endpoint with a connection: %v (present %v), want weight 0", r, ok)
	}
	if h.p.Draining() != 1 {
		t.Errorf("Draining() = %d, want 1", h.p.Draining())
	}

	// It comes back: its weight is restored, its connection never broke.
	s, cs = state(a, b)
	h.sync(t, s, cs)
	if r, ok := real(b); !ok || r.Weight != 1 || r.ActiveConns != 1 {
		t.Fatalf("returning endpoint: %v (present %v), want weight 1 with its connection", r, ok)
	}
	if h.p.Draining() != 0 {
		t.Errorf("Draining() = %d after the endpoint returned, want 0", h.p.Draining())
	}

	// Removed again; once its connection ends the drain check deletes it.
	s, cs = state(a)
	h.sync(t, s, cs)
	h.p.ReapDrained(ctx)
	if _, ok := real(b); !ok {
		t.Fatalf("endpoint with a live connection deleted before it drained")
	}
	_ = h.k.SetConnections(key, netip.MustParseAddrPort(b), 0, 0)
	h.p.ReapDrained(ctx)
	if _, ok := real(b); ok {
		t.Fatalf("drained endpoint without connections not deleted")
	}

	// A connection that never ends is cut after GracefulTimeout.
	s, cs = state(a, b)
	h.sync(t, s, cs)
	_ = h.k.SetConnections(key, netip.MustParseAddrPort(b), 0, 3)
	s, cs = state(a)
	h.sync(t, s, cs)
	h.clock.Step(9 * time.Minute)
	h.p.ReapDrained(ctx)
	if _, ok := real(b); !ok {
		t.Fatalf("deleted before the graceful timeout")
	}
	h.clock.Step(2 * time.Minute)
	h.p.ReapDrained(ctx)
	if _, ok := real(b); ok {
		t.Fatalf("still present after the graceful timeout")
	}
	h.assertConverged(t, s, PlanOptions{})

	// An idle endpoint is deleted within the sync that removes it.
	s, cs = state(a, b)
	h.sync(t, s, cs)
	s, cs = state(b)
	h.sync(t, s, cs)
	h.assertConverged(t, s, PlanOptions{})
}

func TestProxierUDPRemovalClearsConntrack(t *testing.T) {
	h := newHarness(t, PlanOptions{}, nil)
	vip := netip.MustParseAddrPort("10.96.0.12:53")
	old, keep := netip.MustParseAddrPort("10.244.2.7:5353"), netip.MustParseAddrPort("10.244.2.8:5353")
	sp := svcPort("dns", 53, "10.96.0.12", proto(proxier.ProtocolUDP), eps(old.String(), keep.String()))
	h.sync(t, proxier.NewState(testNode(), sp), proxier.FullSync())
	h.ct.Add(proxier.IPv4,
		conntrack.Flow{Protocol: syscall.IPPROTO_UDP, OrigDst: vip, ReplySrc: old},
		conntrack.Flow{Protocol: syscall.IPPROTO_UDP, OrigDst: vip, ReplySrc: keep})

	sp2 := svcPort("dns", 53, "10.96.0.12", proto(proxier.ProtocolUDP), eps(keep.String()))
	h.sync(t, proxier.NewState(testNode(), sp2), changed(sp2))
	if vs := h.k.Snapshot(proxier.IPv4).Servers[VSKey{Addr: vip.Addr(), Protocol: proxier.ProtocolUDP, Port: 53}]; len(vs.Reals) != 1 {
		t.Errorf("UDP real server not deleted at once: %v", vs.Reals)
	}
	flows := h.ct.Flows(proxier.IPv4)
	if len(flows) != 1 || flows[0].ReplySrc != keep {
		t.Errorf("flows after removing %s: %v, want only the one to %s", old, flows, keep)
	}
	if got := testutil.ToFloat64(h.m.ConntrackEntriesCleared); got != 1 {
		t.Errorf("conntrack_entries_cleared_total = %v, want 1", got)
	}
}

func TestProxierRestartAdoptsLeftovers(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, PlanOptions{}, nil)
	key := VSKey{Addr: netip.MustParseAddr("10.96.0.10"), Protocol: proxier.ProtocolTCP, Port: 80}
	web := svcPort("web", 80, "10.96.0.10", eps("10.244.2.5:8080", "10.244.2.6:8080"))
	gone := svcPort("gone", 80, "10.96.0.99", eps("10.244.2.99:80"))
	h.sync(t, proxier.NewState(testNode(), web, gone), proxier.FullSync())

	// What a crash mid-drain leaves behind: weight-0 real servers the new process
	// knows nothing about, one idle, one busy, and one that is desired again.
	for _, r := range []struct {
		addr             string
		active, inactive int
	}{{"10.244.2.20:8080", 0, 0}, {"10.244.2.21:8080", 2, 1}, {"10.244.2.6:8080", 0, 0}} {
		ap := netip.MustParseAddrPort(r.addr)
		if ap.Addr().String() != "10.244.2.6" {
			if err := h.k.AddRealServer(ctx, key, RealServer{Addr: ap}); err != nil {
				t.Fatal(err)
			}
		} else if err := h.k.UpdateRealServer(ctx, key, RealServer{Addr: ap, Weight: 0}); err != nil {
			t.Fatal(err)
		}
		_ = h.k.SetConnections(key, ap, r.active, r.inactive)
	}

	h.restart(t)
	s := proxier.NewState(testNode(), web) // "gone" was deleted while we were down
	h.sync(t, s, proxier.FullSync())
	vs := h.k.Snapshot(proxier.IPv4).Servers[key]
	if _, ok := vs.Real(netip.MustParseAddrPort("10.244.2.20:8080")); ok {
		t.Errorf("idle weight-0 leftover not deleted")
	}
	if r, ok := vs.Real(netip.MustParseAddrPort("10.244.2.21:8080")); !ok || r.Weight != 0 {
		t.Errorf("busy weight-0 leftover: %v present=%v, want kept at weight 0 while it drains", r, ok)
	}
	if r, _ := vs.Real(netip.MustParseAddrPort("10.244.2.6:8080")); r.Weight != 1 {
		t.Errorf("desired real server left at weight %d", r.Weight)
	}
	if h.p.Draining() != 1 {
		t.Errorf("Draining() = %d, want the busy leftover tracked", h.p.Draining())
	}
	if _, ok := h.k.Snapshot(proxier.IPv4).Servers[VSKey{Addr: netip.MustParseAddr("10.96.0.99"), Protocol: proxier.ProtocolTCP, Port: 80}]; ok {
		t.Errorf("virtual server of a Service deleted during the restart survived")
	}
	h.clock.Step(DefaultGracefulTimeout)
	h.p.ReapDrained(ctx)
	h.assertConverged(t, s, PlanOptions{})
}

func TestProxierForeignVirtualServersSurvive(t *testing.T) {
	ctx := context.Background()
	k := &Fake{}
	k.SetHostAddresses(hostAddrs()...)
	foreign := []*VirtualServer{
		vsOf("192.0.2.99:80/tcp", "192.0.2.100:80"),
		vsOf("198.18.0.2:8080/tcp", "192.0.2.100:80"), // a node address, not a node port of ours
		vsOf("10.250.0.1:80/tcp"),                     // protected by ExcludeCIDRs
	}
	for _, vs := range foreign {
		if err := k.AddVirtualServer(ctx, vs); err != nil {
			t.Fatal(err)
		}
		for _, r := range vs.Reals {
			_ = k.AddRealServer(ctx, vs.VSKey, r)
		}
	}
	plan := PlanOptions{ExcludeCIDRs: []netip.Prefix{netip.MustParsePrefix("10.250.0.0/16")}}
	h := newHarness(t, plan, k)
	s := sampleState()
	h.sync(t, s, proxier.FullSync())
	h.sync(t, s, proxier.FullSync())
	check := func(when string) {
		t.Helper()
		got := k.Snapshot(proxier.IPv4)
		for _, vs := range foreign {
			have, ok := got.Servers[vs.VSKey]
			if !ok || len(have.Reals) != len(vs.Reals) {
				t.Errorf("%s: foreign virtual server %s was touched: %v", when, vs.VSKey, have)
			}
		}
	}
	check("after syncs")

	if err := h.p.Cleanup(ctx); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	check("after Cleanup")
	got := k.Snapshot(proxier.IPv4)
	if len(got.Servers) != len(foreign) || len(got.Sets) != 0 || len(got.Addresses) != 0 {
		t.Errorf("Cleanup left kproxy's state behind:\n%s", dump(got))
	}
	if six := k.Snapshot(proxier.IPv6); six.Device {
		t.Errorf("kube-ipvs0 survived the cleanup of its only user")
	}
	if dumpText := h.ipt.Dump(); strings.Contains(dumpText, "KUBE-") {
		t.Errorf("Cleanup left glue behind:\n%s", dumpText)
	}
}

func TestProxierDualStackCleanupKeepsOtherFamily(t *testing.T) {
	ctx := context.Background()
	k := &Fake{}
	k.SetHostAddresses(hostAddrs()...)
	h4 := newHarness(t, PlanOptions{Family: proxier.IPv4}, k)
	h6 := newHarness(t, PlanOptions{Family: proxier.IPv6}, k)
	s := sampleState()
	both := proxier.Multi(h4.p, h6.p)
	if err := both.Sync(ctx, s, proxier.FullSync()); err != nil {
		t.Fatal(err)
	}
	h4.assertConverged(t, s, PlanOptions{Family: proxier.IPv4})
	h6.assertConverged(t, s, PlanOptions{Family: proxier.IPv6})
	if err := h4.p.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if got := k.Snapshot(proxier.IPv6); !got.Device || len(got.Servers) == 0 {
		t.Errorf("IPv4 cleanup removed IPv6 state:\n%s", dump(got))
	}
	h6.assertConverged(t, s, PlanOptions{Family: proxier.IPv6})
}

func TestProxierFailureMidwayThenFullSyncRecovers(t *testing.T) {
	h := newHarness(t, PlanOptions{}, nil)
	s := sampleState()
	adds := 0
	h.k.Hook = func(op, object string) error {
		if op == OpAddDestination {
			if adds++; adds == 3 {
				return kernelErr(op, object, syscall.ENOMEM)
			}
		}
		return nil
	}
	err := h.p.Sync(context.Background(), s, proxier.FullSync())
	var ae *ApplyError
	if !errors.As(err, &ae) || !errors.Is(err, syscall.ENOMEM) || ae.Applied == 0 || ae.Applied >= ae.Total {
		t.Fatalf("Sync = %v, want an *ApplyError part-way through wrapping ENOMEM", err)
	}
	// The Runner retries failures with a full sync, which re-reads the kernel.
	h.sync(t, s, proxier.FullSync())
	h.assertConverged(t, s, PlanOptions{})

	// A partial sync failing half-way leaves every endpoint it had, and the next sync,
	// even one that is not asked to be full, repairs everything.
	web := svcPort("web", 80, "10.96.0.10,fd00:96::10", eps("10.244.2.30:8080", "10.244.2.31:8080"))
	ports := append(sampleState().ServicePorts()[:0:0], sampleState().ServicePorts()...)
	next := proxier.NewState(testNode(), append(ports, web)...)
	h.k.Hook = func(op, object string) error {
		if op == OpUpdateDestination {
			return kernelErr(op, object, syscall.EIO)
		}
		return nil
	}
	if err := h.p.Sync(context.Background(), next, changed(web)); err == nil {
		t.Fatalf("partial sync with a failing drain succeeded")
	}
	vs := h.k.Snapshot(proxier.IPv4).Servers[VSKey{Addr: netip.MustParseAddr("10.96.0.10"), Protocol: proxier.ProtocolTCP, Port: 80}]
	if len(vs.Reals) != 4 {
		t.Errorf("after a failed replacement the virtual server has %v, want old and new endpoints", vs.Reals)
	}
	h.k.Hook = nil
	h.sync(t, next, changed(web))
	h.assertConverged(t, next, PlanOptions{})
}

func TestProxierNew(t *testing.T) {
	ctx := context.Background()
	if _, err := New(ctx, Options{}); err == nil {
		t.Errorf("New without a Kernel succeeded")
	}
	var oe *OptionsError
	if _, err := New(ctx, Options{Kernel: &Fake{}, Plan: PlanOptions{Scheduler: "fifo"}}); !errors.As(err, &oe) {
		t.Errorf("New with a bad scheduler: %v, want an *OptionsError", err)
	}
	k := &Fake{}
	k.SetKernelVersion(5, 4)
	_, err := New(ctx, Options{Kernel: k, DrainCheckInterval: -1, Plan: PlanOptions{
		StrictARP: true, TCPTimeout: time.Hour, UDPTimeout: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"net/ipv4/vs/conn_reuse_mode": "0", "net/ipv4/conf/all/arp_ignore": "1", "net/ipv4/conf/all/arp_announce": "2"} {
		if v, _ := k.Sysctl(ctx, name); v != want {
			t.Errorf("%s = %s, want %s", name, v, want)
		}
	}
	if got := k.Timeouts(); got.TCP != time.Hour || got.UDP != time.Minute || got.TCPFin != 0 {
		t.Errorf("timeouts = %+v", got)
	}
}

func TestProxierNoLocalEndpointsMetric(t *testing.T) {
	h := newHarness(t, PlanOptions{}, nil)
	gauge := func(policy string) float64 { return testutil.ToFloat64(h.m.NoLocalEndpoints.WithLabelValues(policy)) }
	a := svcPort("a", 80, "10.96.0.1", internalLocal, eps("10.244.2.5:80"))
	b := svcPort("b", 80, "10.96.0.2", nodePort(30002), externalLocal, eps("10.244.2.6:80"))
	h.sync(t, proxier.NewState(testNode(), a, b), proxier.FullSync())
	if gauge("internal") != 1 || gauge("external") != 1 {
		t.Errorf("no-local gauges internal=%v external=%v, want 1 and 1", gauge("internal"), gauge("external"))
	}
	a2 := svcPort("a", 80, "10.96.0.1", internalLocal, eps("10.244.1.5:80@local"))
	h.sync(t, proxier.NewState(testNode(), a2, b), changed(a2))
	if gauge("internal") != 0 || gauge("external") != 1 {
		t.Errorf("after a local endpoint appeared: internal=%v external=%v, want 0 and 1", gauge("internal"), gauge("external"))
	}
}
