package kernel

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kproxy/kproxy/iptables"
	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/proxier/metrics"
	"github.com/kproxy/kproxy/test/netns"
)

// restoreFault is a real reason for iptables-restore to fail, which a test switches on
// before a change is synced and off again afterwards.
type restoreFault struct {
	// inject makes every following restore fail; clear ends that.
	inject, clear func(t *testing.T)
	// kind is the classification the sync error must carry.
	kind error
	// logged is a piece of the failure's text that must reach the log.
	logged string
}

// faultRunnerOptions make the Runner retry quickly; SyncPeriod is long so that only the
// change and the retries sync.
var faultRunnerOptions = proxier.RunnerOptions{
	SyncPeriod:     time.Minute,
	InitialBackoff: 200 * time.Millisecond,
	MaxBackoff:     time.Second,
}

// runRestoreFault is the scenario both restore-fault tests share. A Runner drives p
// (whose metrics are m and whose log goes to logs); service 1 is served by local-0.
// With the fault on, a change moves it to remote-0 and gives it a node port: the sync
// must fail with the fault's classification, be counted and logged, and leave the
// kernel's ruleset byte-identical, so connections still reach local-0 and the node
// port stays closed. Once the fault is cleared, the Runner's retry must be a full sync
// that succeeds, after which connections reach remote-0, also through the node port.
func runRestoreFault(t *testing.T, w *world, p proxier.Proxier, m *metrics.Metrics, logs *logBook, fault restoreFault) {
	t.Helper()
	from := w.local(1).NS
	src := newSource(w.node)
	src.Set(w.node, w.servicePort(svc{n: 1, endpoints: []*netns.Pod{w.local(0)}}))
	run := startRunner(t, p, src, m, logs, faultRunnerOptions)
	first := run.rec.waitFor(t, 0, 30*time.Second, "to succeed", func(syncRecord) bool { return true })
	if first.Err != nil {
		t.Fatalf("first sync: %v", first.Err)
	}
	servedOnlyBy(t, from, clusterAddr(1), 5, w.local(0))

	fault.inject(t)
	before := w.save(t)
	restoreFailures := testutil.ToFloat64(m.RestoreFailures)
	syncFailures := testutil.ToFloat64(m.SyncFailures)

	mark := run.rec.count()
	src.Set(w.node, w.servicePort(svc{n: 1, endpoints: []*netns.Pod{w.remote(0)}, nodePort: true}))
	bad := run.rec.waitFor(t, mark, 30*time.Second, "to fail", func(r syncRecord) bool { return true })
	t.Logf("sync with the fault on: %s", describeSync(bad))
	if bad.Err == nil {
		t.Fatal("the sync succeeded although the fault was on; the test proves nothing")
	}
	if !errors.Is(bad.Err, fault.kind) {
		t.Errorf("sync error %q is not classified as %q", bad.Err, fault.kind)
	}
	var ee *iptables.ExecError
	if !errors.As(bad.Err, &ee) || ee.Op != iptables.OpRestore {
		t.Errorf("sync error %q does not name the failed iptables-restore", bad.Err)
	}

	if after := w.save(t); after != before {
		t.Errorf("the failed sync changed the kernel's ruleset:\n%s", lineDiff(before, after))
	}
	servedOnlyBy(t, from, clusterAddr(1), 10, w.local(0))
	if rep, out := probe(t, w.client().NS, w.nodePortAddr(1), time.Second); out == netns.OK {
		t.Errorf("the node port of the failed change answered (by %s)", rep.Server)
	}
	if got := testutil.ToFloat64(m.RestoreFailures); got <= restoreFailures {
		t.Errorf("kubeproxy_sync_proxy_rules_iptables_restore_failures_total = %v after the failure, want more than %v", got, restoreFailures)
	}
	if got := testutil.ToFloat64(m.SyncFailures); got <= syncFailures {
		t.Errorf("kubeproxy_sync_proxy_rules_failures_total = %v after the failure, want more than %v", got, syncFailures)
	}
	if lines := logs.find("Sync failed", fault.logged); len(lines) == 0 {
		t.Errorf("no log line reports the failed sync with %q", fault.logged)
	}

	mark = run.rec.count()
	fault.clear(t)
	good := run.rec.waitFor(t, mark, 30*time.Second, "to succeed after the fault was cleared", succeeded)
	t.Logf("first successful sync after the fault: %s", describeSync(good))
	if !good.Changes.Full {
		t.Errorf("the retry after a failure was a partial sync (%d services), want a full one", len(good.Changes.Services))
	}
	servedOnlyBy(t, from, clusterAddr(1), 10, w.remote(0))
	servedOnlyBy(t, w.client().NS, w.nodePortAddr(1), 3, w.remote(0))
	t.Logf("restore failures counted: %v", testutil.ToFloat64(m.RestoreFailures)-restoreFailures)
}

// nodeProxier starts the iptables backend the kproxy command uses, in the node
// namespace, with its rules removed when the test ends.
func (w *world) nodeProxier(t *testing.T, m *metrics.Metrics, logs *logBook) *iptables.NodeProxier {
	t.Helper()
	p, err := iptables.NewNodeProxier(context.Background(), iptables.NodeOptions{
		Backend:  w.backend,
		Netns:    w.topo.Node.Path(),
		Families: []iptables.Family{iptables.IPv4},
		Render:   w.renderOptions(),
		Metrics:  m,
		Logger:   logs.logger(t).WithName("iptables"),
	})
	if err != nil {
		t.Fatalf("start the iptables proxier in %s: %v", w.topo.Node, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := p.Cleanup(ctx); err != nil && !strings.Contains(err.Error(), "still referenced") {
			t.Errorf("cleanup: %v", err)
		}
		_ = p.Close()
	})
	return p
}
