package reliability

import (
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/kproxy/kproxy/test/envtest"
)

// TestTakeoverFromRunningKubeProxy replaces a running upstream kube-proxy by kproxy
// the way an image swap does: kube-proxy gets SIGTERM and leaves its rules behind,
// then kproxy starts on the same node. Not one new connection may fail, established
// connections keep their pod, and once kproxy has synced, the node holds exactly the
// rules kproxy programs on a clean node: kube-proxy's chains that kproxy does not use
// (per-endpoint KUBE-SEP- chains and the like) are gone.
func TestTakeoverFromRunningKubeProxy(t *testing.T) {
	t.Parallel()
	bin, err := envtest.KubeProxyBinary()
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, envtest.Options{})
	kp := w.startProxy(t, "kube-proxy", bin)
	w.waitServing(t, kp)
	var conns []*longLived
	for _, tg := range w.targets() {
		conns = append(conns, w.openLongLived(t, tg))
	}
	pr := startProber(t, w.client.NS, w.targets()...)
	time.Sleep(time.Second)
	upstream := w.saveRules(t)

	pr.Mark("SIGTERM to kube-proxy")
	if err := kp.signal(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if d := upstream.diff(w.saveRules(t)); d != "" {
		t.Fatalf("kube-proxy changed its rules on exit; the scenario needs them left in place:\n%s", d)
	}
	pr.Mark("start kproxy")
	p := w.startProxy(t, "kproxy", kproxyV1)
	w.waitSynced(t, p)
	pr.Mark("kproxy synced")
	time.Sleep(2 * time.Second)
	for _, c := range conns {
		c.check(t, "after kproxy took over from kube-proxy")
	}
	pr.RequireNoFailures(t)
	taken := w.saveRules(t)
	if s := p.syncs(); len(s) > 0 {
		t.Logf("kproxy's first sync: %+v", s[0])
	}

	// What kproxy programs on a clean node, for comparison: stop it, remove every
	// rule, start it again.
	if err := p.signal(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if out, err := w.node.Exec(t.Context(), kproxyV1, "--cleanup"); err != nil {
		t.Fatalf("kproxy --cleanup: %v\n%s", err, out)
	}
	// What --cleanup leaves is not kproxy's to manage (kube-proxy's KUBE-FIREWALL,
	// which kubelet owns on a real node), nor is the order of the jumps to it.
	foreign := w.saveRules(t)
	if rest := foreign.chainNames("KUBE-SVC-"); len(rest) > 0 {
		t.Fatalf("--cleanup left %v", rest)
	}
	t.Logf("left by --cleanup, not kproxy's: %v", foreign.chainNames("KUBE-"))
	clean := w.startProxy(t, "kproxy on a clean node", kproxyV1)
	w.waitSynced(t, clean)
	w.waitServing(t, clean)
	fresh := w.saveRules(t)

	var leftovers []string
	for c := range upstream.chains {
		if !fresh.chains[c] {
			leftovers = append(leftovers, c)
		}
	}
	slices.Sort(leftovers)
	t.Logf("kube-proxy chains kproxy does not use: %v", leftovers)
	if len(leftovers) == 0 {
		t.Error("kube-proxy left no chain kproxy does not use; the takeover proved nothing about stale chains")
	}
	for _, c := range leftovers {
		if taken.chains[c] {
			t.Errorf("kube-proxy's %s is still there after kproxy took over", c)
		}
	}
	if d := fresh.without(foreign).diff(taken.without(foreign)); d != "" {
		t.Errorf("the node kproxy took over differs from a node kproxy programmed from scratch (- clean, + taken over):\n%s", d)
	}
}
