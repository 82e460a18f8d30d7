package iptables

import (
	"context"
	"strings"
	"testing"

	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/proxier/conntrack"
	"github.com/kproxy/kproxy/proxier/metrics"
)

// renderedServices exercises most of the renderer's shapes.
func renderedServices() []*proxier.ServicePort {
	return []*proxier.ServicePort{
		svc("default/web:http", "172.30.0.1", endpoints("10.244.1.2:8080@node-a", "10.244.2.2:8080")),
		svc("default/dns:dns", "172.30.0.10", proto(proxier.ProtocolUDP), port(53), nodePort(30053),
			endpoints("10.244.1.3:5353@node-a", "10.244.2.3:5353")),
		svc("default/empty", "172.30.0.20"),
		svc("default/lb", "172.30.0.30", nodePort(30080), lbVIP("203.0.113.10"), sourceRanges("198.51.100.0/24"),
			etpLocal(30999), endpoints("10.244.1.4:80@node-a")),
		svc("default/ext", "172.30.0.40", externalIPs("203.0.113.20"), affinity(10800e9), endpoints("10.244.2.5:80", "10.244.2.6:80")),
	}
}

func newRenderedProxier(t testing.TB, k Kernel, sets IPSetKernel) *Proxier {
	t.Helper()
	p, err := New(context.Background(), Options{
		Family:    IPv4,
		Kernel:    k,
		Render:    RenderOptions{Family: IPv4, LocalDetector: clusterCIDRs},
		IPSets:    sets,
		Conntrack: conntrack.NewFake(),
		Metrics:   metrics.New(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSyncWithRenderer runs the real renderer through the sync machinery against
// the Fake kernel.
func TestSyncWithRenderer(t *testing.T) {
	ctx := context.Background()
	k := NewFake(FakeOptions{})
	sets := NewFakeIPSets()
	p := newRenderedProxier(t, k, sets)
	svcs := renderedServices()
	if err := p.Sync(ctx, proxier.NewState(nodeA, svcs...), proxier.FullSync()); err != nil {
		t.Fatal(err)
	}
	first := p.LastSync()
	assertKernelMatches(t, k, p.applied)
	t.Logf("first sync: %d chains, %d bytes", first.ChainsWritten, first.PayloadBytes)

	k.ResetStats()
	if err := p.Sync(ctx, proxier.NewState(nodeA, svcs...), proxier.FullSync()); err != nil {
		t.Fatal(err)
	}
	if st := p.LastSync(); st.Restores != 0 || st.JumpsAdded != 0 {
		t.Errorf("no-op full sync with the renderer: %+v\n%s", st, k.Stats().LastRestore)
	}

	// One endpoint of web goes away.
	svcs[0] = svc("default/web:http", "172.30.0.1", endpoints("10.244.1.2:8080@node-a"))
	if err := p.Sync(ctx, proxier.NewState(nodeA, svcs...), changed(svcs[0])); err != nil {
		t.Fatal(err)
	}
	st := p.LastSync()
	if st.Full || st.Restores != 1 || st.ChainsWritten == 0 {
		t.Errorf("partial sync: %+v", st)
	}
	payload := string(k.Stats().LastRestore)
	if strings.Contains(payload, "default/dns") || strings.Contains(payload, "*filter") {
		t.Errorf("partial payload touches unchanged services:\n%s", payload)
	}
	t.Logf("partial sync: %d chains, %d bytes:\n%s", st.ChainsWritten, st.PayloadBytes, payload)
	assertKernelMatches(t, k, p.applied)

	// Deleting services removes their chains.
	if err := p.Sync(ctx, proxier.NewState(nodeA, svcs[:2]...), changed(svcs[2:]...)); err != nil {
		t.Fatal(err)
	}
	assertKernelMatches(t, k, p.applied)
	if err := p.Sync(ctx, proxier.NewState(nodeA, svcs[:2]...), proxier.FullSync()); err != nil {
		t.Fatal(err)
	}
	if st := p.LastSync(); st.Restores != 0 {
		t.Errorf("full sync after deletions restored:\n%s", k.Stats().LastRestore)
	}

	if err := p.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(k.Dump(), "\n") {
		if strings.Contains(line, "KUBE-") {
			t.Errorf("left after Cleanup: %s", line)
		}
	}
	if names := sets.Names(); len(names) != 0 {
		t.Errorf("ipsets left after Cleanup: %v", names)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	ctx := context.Background()
	if _, err := New(ctx, Options{Family: IPv4}); err == nil {
		t.Error("New without a Kernel succeeded")
	}
	if _, err := New(ctx, Options{Family: IPv6, Kernel: NewFake(FakeOptions{}), Render: RenderOptions{Family: IPv6, MasqueradeBit: 40}}); err == nil {
		t.Error("New with an invalid mark bit succeeded")
	}
	p, err := New(ctx, Options{Family: IPv6, Kernel: NewFake(FakeOptions{})})
	if err != nil || p.family != IPv6 {
		t.Errorf("New(IPv6) = %v, %v", p, err)
	}
}

// TestSyncIPv6WithRenderer checks the IPv6 proxier end to end on the Fake: its set is
// the IPv6 one and the IPv4 proxier's set is left alone.
func TestSyncIPv6WithRenderer(t *testing.T) {
	ctx := context.Background()
	k := NewFake(FakeOptions{})
	sets := NewFakeIPSets()
	if err := sets.Create(ctx, &IPSet{Name: loopbackSetV4, Type: loopbackSetType, Family: IPv4}); err != nil {
		t.Fatal(err)
	}
	p, err := New(ctx, Options{Family: IPv6, Kernel: k, IPSets: sets,
		Render: RenderOptions{Family: IPv6, LocalDetector: clusterCIDRs}})
	if err != nil {
		t.Fatal(err)
	}
	sp := svc("default/web6", "fd00:30::1", endpoints("[fd00:244:1::2]:8080@node-a", "[fd00:244:2::2]:8080"))
	if err := p.Sync(ctx, proxier.NewState(nodeA, sp), proxier.FullSync()); err != nil {
		t.Fatal(err)
	}
	if err := p.Sync(ctx, proxier.NewState(nodeA, sp), proxier.FullSync()); err != nil {
		t.Fatal(err)
	}
	if st := p.LastSync(); st.Restores != 0 {
		t.Errorf("IPv6 no-op full sync restored")
	}
	if !strings.Contains(k.Dump(), "# IPv6") || strings.Contains(k.Dump(), "# IPv4") {
		t.Errorf("IPv6 proxier wrote outside its family:\n%s", k.Dump())
	}
	if err := p.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if names := sets.Names(); len(names) != 1 || names[0] != loopbackSetV4 {
		t.Errorf("sets after IPv6 Cleanup: %v, want only the IPv4 one", names)
	}
}
