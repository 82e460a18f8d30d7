package kernel

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kproxy/kproxy/iptables"
	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/proxier/metrics"
)

// TestRunnerRetriesInjectedRestoreFailure is the unit-level twin of the kernel tests:
// the iptables proxier over the Fake kernel, driven by a real proxier.Runner. One
// restore is made to fail through the Kernel interface's fault injection (classified as
// a held xtables lock); the Fake must be left exactly as it was, the failure counted
// (also as a partial-sync failure) and logged, and the Runner must retry after its
// backoff with a full sync that writes the change.
//
// iptables' own TestRestoreFailureKeepsRulesAndNextFullSyncRepairs (proxier_test.go)
// proves the Proxier half of this with direct Sync calls; this test adds the Runner:
// the retry, its backoff and the full change set it asks for.
func TestRunnerRetriesInjectedRestoreFailure(t *testing.T) {
	t.Parallel()
	sets := iptables.NewFakeIPSets()
	fake := iptables.NewFake(iptables.FakeOptions{
		Backend: iptables.BackendLegacy,
		IPSetExists: func(_ iptables.Family, name string) bool {
			_, ok := sets.Set(name)
			return ok
		},
	})
	m, logs := metrics.New(), &logBook{}
	p, err := iptables.New(t.Context(), iptables.Options{
		Family: iptables.IPv4, Kernel: fake, IPSets: sets, Metrics: m, Logger: logs.logger(t).WithName("iptables"),
	})
	if err != nil {
		t.Fatal(err)
	}
	node := proxier.Node{Name: nodeName, Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.10")}}
	service := func(ep string) *proxier.ServicePort {
		return &proxier.ServicePort{
			Name:       proxier.ServicePortName{ServiceName: proxier.ServiceName{Namespace: "kernel", Name: "fake"}, Port: "p", Protocol: proxier.ProtocolTCP},
			ClusterIPs: []netip.Addr{clusterIP(1)},
			Port:       svcPort,
			Endpoints:  []proxier.Endpoint{{Addr: netip.MustParseAddr(ep), Port: podPort, Ready: true, Serving: true, NodeName: remoteName}},
		}
	}
	src := newSource(node)
	src.Set(node, service("10.244.2.2"))
	const backoff = 300 * time.Millisecond
	// The Fake is dumped right after every failed sync, from the Runner's goroutine,
	// before the retry can touch it.
	afterFailure := make(chan string, 10)
	dumpOnFailure := onSyncDone(func(r proxier.SyncResult) {
		if r.Err != nil {
			afterFailure <- fake.Dump()
		}
	})
	run := startRunner(t, p, src, m, logs, proxier.RunnerOptions{SyncPeriod: time.Minute, InitialBackoff: backoff, MaxBackoff: time.Second,
		Observers: []proxier.SyncObserver{dumpOnFailure}})
	if first := run.rec.waitFor(t, 0, 10*time.Second, "at all", func(syncRecord) bool { return true }); first.Err != nil {
		t.Fatalf("first sync: %v", first.Err)
	}
	before := fake.Dump()
	if !strings.Contains(before, "10.244.2.2:8080") {
		t.Fatalf("the first sync did not program the endpoint:\n%s", before)
	}

	fake.FailNext(iptables.OpRestore, fmt.Errorf("injected: %w", iptables.ErrLockHeld))
	mark := run.rec.count()
	src.Set(node, service("10.244.2.3"))
	bad := run.rec.waitFor(t, mark, 10*time.Second, "after the change", func(syncRecord) bool { return true })
	good := run.rec.waitFor(t, mark+1, 10*time.Second, "to succeed after the injected failure", succeeded)

	switch {
	case bad.Err == nil:
		t.Fatal("the sync with an injected restore failure succeeded")
	case !errors.Is(bad.Err, iptables.ErrLockHeld):
		t.Errorf("sync error %q lost the injected classification", bad.Err)
	case bad.Changes.Full:
		t.Errorf("the change was synced fully; want a partial sync to fail, so the retry's full sync is the Runner's doing")
	}
	if got := <-afterFailure; got != before {
		t.Errorf("the failed sync changed the Fake:\n%s", lineDiff(before, got))
	}
	if !good.Changes.Full {
		t.Errorf("the retry was a partial sync, want a full one")
	}
	if wait := good.Start.Sub(bad.End); wait < backoff-20*time.Millisecond {
		t.Errorf("the retry started %v after the failure, before the %v backoff", wait, backoff)
	}
	after := fake.Dump()
	if !strings.Contains(after, "10.244.2.3:8080") || strings.Contains(after, "10.244.2.2:8080") {
		t.Errorf("after the retry the Fake does not hold the changed endpoint:\n%s", after)
	}
	st := fake.Stats()
	if st.FailedRestores != 1 {
		t.Errorf("Fake saw %d failed restores, want 1", st.FailedRestores)
	}
	for _, c := range []struct {
		name string
		got  float64
	}{
		{"sync_proxy_rules_iptables_restore_failures_total", testutil.ToFloat64(m.RestoreFailures)},
		{"sync_proxy_rules_iptables_partial_restore_failures_total", testutil.ToFloat64(m.PartialRestoreFailures)},
		{"sync_proxy_rules_failures_total", testutil.ToFloat64(m.SyncFailures)},
	} {
		if c.got != 1 {
			t.Errorf("%s = %v, want 1", c.name, c.got)
		}
	}
	if len(logs.find("Sync failed; retrying with a full sync", "injected")) == 0 {
		t.Error("the Runner did not log the failed sync")
	}
}

// onSyncDone is a proxier.SyncObserver that calls a function after every sync attempt.
type onSyncDone func(proxier.SyncResult)

// SyncQueued implements proxier.SyncObserver.
func (onSyncDone) SyncQueued(time.Time) {}

// SyncDone implements proxier.SyncObserver.
func (f onSyncDone) SyncDone(r proxier.SyncResult) { f(r) }
