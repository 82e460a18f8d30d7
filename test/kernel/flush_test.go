package kernel

import (
	"testing"
	"time"

	"github.com/kproxy/kproxy/iptables"
	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/proxier/metrics"
	"github.com/kproxy/kproxy/test/netns"
)

// flushSyncPeriod is the Runner's SyncPeriod in the flush test: short, so that the test
// can require the repair within one period and still finish quickly.
const flushSyncPeriod = 2 * time.Second

// repairSlack is what the bound allows on top of one sync period for the repairing
// sync itself and the probe that notices it, on a loaded 2-core machine.
const repairSlack = time.Second

// externalFlush is something other software does to the node's rules.
type externalFlush struct {
	name string
	run  func(t *testing.T, w *world)
	// canary says whether kproxy's canary chain in mangle goes too, so that the
	// repairing sync must log that the tables were flushed.
	canary bool
}

var externalFlushes = []externalFlush{
	{name: "NatFlush", run: func(t *testing.T, w *world) {
		w.iptables(t, "nat", "-F")
	}},
	{name: "NatFlushDeleteChains", run: func(t *testing.T, w *world) {
		w.iptables(t, "nat", "-F")
		for _, c := range w.ownedChains(t, "nat") {
			w.iptables(t, "nat", "-X", c)
		}
	}},
	// What a firewalld reload or "iptables-restore < /etc/iptables/rules.v4" without
	// kproxy's rules amounts to: every table emptied, every user chain deleted.
	{name: "FullFlush", canary: true, run: func(t *testing.T, w *world) {
		for _, table := range []string{"nat", "filter", "mangle"} {
			w.iptables(t, table, "-F")
			w.iptables(t, table, "-X")
		}
	}},
}

// TestNatFlushRestoredWithinOneSyncPeriod: with the Runner running at a 2 s SyncPeriod,
// someone flushes the nat table (then also deletes kproxy's nat chains, then flushes
// everything, as a firewall reload does) right after a sync. Service traffic breaks,
// and the next periodic full sync, due within one SyncPeriod of the flush, repairs it:
// the repairing sync starts within one period of the flush and a connection is
// answered within one period plus repairSlack. test/e2e's ExternalFlushRepaired repairs
// with a direct full Sync call; this test goes through the Runner's periodic sync (on
// nft, its sampled verification) and bounds the time.
func TestNatFlushRestoredWithinOneSyncPeriod(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, b)
			m, logs := metrics.New(), &logBook{}
			p := w.nodeProxier(t, m, logs)
			eps := []*netns.Pod{w.local(0), w.remote(0)}
			src := newSource(w.node)
			src.Set(w.node, w.servicePort(svc{n: 2, endpoints: eps, nodePort: true}))
			run := startRunner(t, p, src, m, logs, proxier.RunnerOptions{SyncPeriod: flushSyncPeriod})
			run.rec.waitFor(t, 0, 30*time.Second, "to succeed", succeeded)
			servedOnlyBy(t, w.local(1).NS, clusterAddr(2), 4, eps...)
			for _, f := range externalFlushes {
				t.Run(f.name, func(t *testing.T) { testFlushRepaired(t, w, run, f, eps) })
			}
		})
	}
}

func testFlushRepaired(t *testing.T, w *world, run *running, f externalFlush, eps []*netns.Pod) {
	from := w.local(1).NS
	// Flush right after a periodic sync, so the flush is visible for almost a whole
	// period and the next sync is the periodic one.
	mark := run.rec.count()
	last := run.rec.waitFor(t, mark, 3*flushSyncPeriod, "to run periodically", func(r syncRecord) bool { return r.Err == nil && r.Changes.Full })
	canaryLogs := len(run.logs.find("KUBE-PROXY-CANARY is gone"))
	mark = run.rec.count()
	f.run(t, w)
	flushed := time.Now()
	t.Logf("flushed %v after the last periodic sync ended", flushed.Sub(last.End).Round(time.Millisecond))
	if rep, out := probe(t, from, clusterAddr(2), 300*time.Millisecond); out == netns.OK {
		t.Errorf("the service still answered right after the flush (by %s); the test shows nothing", rep.Server)
	}

	answered := firstAnswer(t, from, clusterAddr(2), 100*time.Millisecond, 2*flushSyncPeriod+10*time.Second)
	took := answered.Sub(flushed)
	repair := run.rec.waitFor(t, mark, time.Second, "after the flush", succeeded)
	t.Logf("repaired by a sync that started %v after the flush (%s); first answer %v after the flush",
		repair.Start.Sub(flushed).Round(time.Millisecond), describeSync(repair), took.Round(time.Millisecond))
	if d := repair.Start.Sub(flushed); d > flushSyncPeriod+100*time.Millisecond {
		t.Errorf("the repairing sync started %v after the flush, want within one SyncPeriod (%v)", d, flushSyncPeriod)
	}
	if !repair.Changes.Full {
		t.Errorf("the repairing sync was partial")
	}
	if took > flushSyncPeriod+repairSlack {
		t.Errorf("traffic came back %v after the flush, want within one SyncPeriod (%v) + %v", took, flushSyncPeriod, repairSlack)
	}
	if f.canary && len(run.logs.find("KUBE-PROXY-CANARY is gone")) <= canaryLogs {
		t.Errorf("the repairing sync did not log that the canary was gone")
	}
	servedOnlyBy(t, from, clusterAddr(2), 6, eps...)
	servedOnlyBy(t, w.client().NS, w.nodePortAddr(2), 3, eps...)
}

// ownedChains lists kproxy's chains in one table of the node.
func (w *world) ownedChains(t *testing.T, table string) []string {
	t.Helper()
	var out []string
	cur := ""
	for _, line := range splitLines(w.save(t)) {
		switch {
		case len(line) > 1 && line[0] == '*':
			cur = line[1:]
		case cur == table && len(line) > 1 && line[0] == ':':
			name := chainDecl(line)
			if iptables.OwnedChain(iptables.Table(table), iptables.Chain(name)) {
				out = append(out, name)
			}
		}
	}
	return out
}
