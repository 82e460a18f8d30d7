package reliability

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kproxy/kproxy/test/envtest"
)

// TestRestartWithoutLoss restarts kproxy under traffic, the two ways a node's proxy is
// restarted: a crash (SIGKILL, then the same binary again) and a DaemonSet rolling
// update (SIGTERM, then a different build). New connections every 10 ms to a ClusterIP
// and a NodePort must all succeed, established connections must keep reaching their
// pod, and each new process must adopt the rules it finds: its first sync is a full
// one that finds nothing to change and writes nothing.
func TestRestartWithoutLoss(t *testing.T) {
	t.Parallel()
	w := newWorld(t, envtest.Options{})
	p := w.startProxy(t, "kproxy "+versionV1, kproxyV1)
	w.waitServing(t, p)
	w.waitSynced(t, p)
	var conns []*longLived
	for _, tg := range w.targets() {
		conns = append(conns, w.openLongLived(t, tg))
	}
	pr := startProber(t, w.client.NS, w.targets()...)
	time.Sleep(time.Second)
	before := w.saveRules(t)

	top := t
	restart := func(t *testing.T, sig syscall.Signal, name, binary, version string) {
		pr.Mark(sig.String() + " to " + p.name)
		if err := p.signal(sig, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		if sig == syscall.SIGTERM && p.cmd.ProcessState.ExitCode() != 0 {
			t.Errorf("%s exited with %v after SIGTERM, want status 0", p.name, p.cmd.ProcessState)
		}
		// A DaemonSet's pod is gone for a moment before its successor starts.
		time.Sleep(time.Second)
		if d := before.diff(w.saveRules(t)); d != "" {
			t.Errorf("the rules changed when %s stopped:\n%s", p.name, d)
		}
		pr.Mark("start " + name)
		p = w.startProxy(top, name, binary) // it outlives the sub-test
		w.waitSynced(t, p)
		pr.Mark(name + " synced")
		time.Sleep(time.Second)
		if !strings.Contains(p.logs.String(), `version="`+version+`"`) {
			t.Errorf("%s does not report version %s", name, version)
		}
		w.requireAdopted(t, p, before)
		for _, c := range conns {
			c.check(t, "after "+name+" took over")
		}
	}
	t.Run("SIGKILL", func(t *testing.T) {
		restart(t, syscall.SIGKILL, "kproxy "+versionV1+" (restarted)", kproxyV1, versionV1)
	})
	t.Run("RollingUpdate", func(t *testing.T) {
		restart(t, syscall.SIGTERM, "kproxy "+versionV2, kproxyV2, versionV2)
	})
	pr.RequireNoFailures(t)
}

// requireAdopted checks that p, just started on a node already programmed as before,
// took the rules over as they were: its first sync of each family read the kernel back
// (full) and wrote and deleted nothing, no byte went to iptables-restore, and the rules
// are still exactly before.
func (w *world) requireAdopted(t *testing.T, p *proxy, before ruleset) {
	t.Helper()
	seen := map[string]bool{}
	for _, s := range p.syncs() {
		if seen[s.family] {
			continue
		}
		seen[s.family] = true
		t.Logf("%s: first sync of %s: %+v", p.name, s.family, s)
		if !s.full || s.written != 0 || s.deleted != 0 || s.restores != 0 {
			t.Errorf("%s's first %s sync was %+v; want a full sync that writes and deletes nothing", p.name, s.family, s)
		}
	}
	if !seen["IPv4"] {
		t.Errorf("%s logged no IPv4 sync", p.name)
	}
	m, err := w.metrics()
	if err != nil {
		t.Fatal(err)
	}
	if b := metric(m, "kproxy_rules_written_bytes_total"); b != 0 {
		t.Errorf("%s wrote %v bytes to iptables-restore; a restart must not rewrite unchanged rules", p.name, b)
	}
	if d := before.diff(w.saveRules(t)); d != "" {
		t.Errorf("the rules differ after %s took over:\n%s", p.name, d)
	}
}
