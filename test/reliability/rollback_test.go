package reliability

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/kproxy/kproxy/test/envtest"
	"github.com/kproxy/kproxy/test/netns"
)

// TestRollbackToKubeProxy hands a node back from kproxy to upstream kube-proxy, the way
// the DaemonSet guide's rollback does: kproxy stops and leaves its rules, kube-proxy
// starts on them. kproxy's dispatch chains must not outlive kube-proxy's first sync:
// left behind, they would keep referencing per-service chains, and kube-proxy's
// deletion of such a chain (a Service deleted later) would fail its whole nat restore,
// freezing the node's Service rules. New connections must not fail meanwhile.
func TestRollbackToKubeProxy(t *testing.T) {
	t.Parallel()
	bin, err := envtest.KubeProxyBinary()
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, envtest.Options{})
	// More distinct ClusterIPs than a dispatch leaf holds, so that kproxy builds a tree.
	local := w.node.Pods[0]
	var extra []*v1.Service
	for i := range 40 {
		svc := service(fmt.Sprintf("extra-%02d", i), v1.ServiceTypeClusterIP)
		w.create(t, svc, w.endpointSlice(svc.Name, local))
		extra = append(extra, svc)
	}

	p := w.startProxy(t, "kproxy", kproxyV1)
	w.waitSynced(t, p)
	w.waitServing(t, p)
	if d := dispatchChains(w.saveRules(t)); len(d) == 0 {
		t.Fatal("kproxy built no dispatch chain; the rollback would prove nothing")
	}
	pr := startProber(t, w.client.NS, w.targets()...)
	time.Sleep(time.Second)

	pr.Mark("SIGTERM to kproxy")
	if err := p.signal(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	pr.Mark("start kube-proxy")
	kp := w.startProxy(t, "kube-proxy", bin)
	w.waitServing(t, kp)
	netns.Eventually(t, 60*time.Second, "kube-proxy's first sync removed kproxy's dispatch chains", func() error {
		if d := dispatchChains(w.saveRules(t)); len(d) > 0 {
			return fmt.Errorf("still there: %v", d)
		}
		return nil
	})

	// A Service deleted now makes kube-proxy delete its chains; a later Service must
	// still be programmed, so every restore in between succeeded.
	gone := "nat/" + svcChainOf(t, w, extra[0])
	pr.Mark("delete extra-00, create after")
	if err := w.env.Client.Delete(t.Context(), extra[0]); err != nil {
		t.Fatal(err)
	}
	after := service("after", v1.ServiceTypeClusterIP)
	w.create(t, after, w.endpointSlice("after", local))
	afterAddr := netip.AddrPortFrom(netip.MustParseAddr(after.Spec.ClusterIP), 80)
	netns.Eventually(t, 60*time.Second, "kube-proxy serves a Service created after the rollback", func() error {
		_, err := w.client.DialTCP(t.Context(), afterAddr, time.Second)
		return err
	})
	netns.Eventually(t, 3*syncPeriod+30*time.Second, "kube-proxy deleted the chain of the deleted Service", func() error {
		if w.saveRules(t).chains[gone] {
			return fmt.Errorf("%s still exists", gone)
		}
		return nil
	})
	m, err := w.metrics()
	if err != nil {
		t.Fatal(err)
	}
	if f := metric(m, "kubeproxy_sync_proxy_rules_iptables_restore_failures_total"); f != 0 {
		t.Errorf("kube-proxy counted %v failed restores after the rollback", f)
	}
	pr.RequireNoFailures(t)
}

// svcChainOf finds the KUBE-SVC- chain kube-proxy programs for svc's only port, by the
// rule comment kube-proxy puts on the KUBE-SERVICES jump.
func svcChainOf(t *testing.T, w *world, svc *v1.Service) string {
	t.Helper()
	want := fmt.Sprintf("%s/%s cluster IP", svc.Namespace, svc.Name)
	var chain string
	netns.Eventually(t, 30*time.Second, "kube-proxy programs "+svc.Name, func() error {
		for _, r := range w.saveRules(t).rules["nat/KUBE-SERVICES"] {
			if c, ok := jumpWithComment(r, want); ok {
				chain = c
				return nil
			}
		}
		return errors.New("no KUBE-SERVICES rule for it yet")
	})
	return chain
}

// jumpWithComment returns the target of rule when it carries the comment.
func jumpWithComment(rule, comment string) (string, bool) {
	if !strings.Contains(rule, `--comment "`+comment+`"`) {
		return "", false
	}
	_, target, ok := strings.Cut(rule, " -j ")
	if !ok {
		return "", false
	}
	target, _, _ = strings.Cut(target, " ")
	return target, true
}

// dispatchChains are kproxy's dispatch-tree chains in rs (KUBE-SVC-DST-*, or KUBE-DST-*
// as kproxy once named them).
func dispatchChains(rs ruleset) []string {
	var out []string
	for _, c := range rs.chainNames("KUBE-") {
		if strings.Contains(c, "/KUBE-SVC-DST-") || strings.Contains(c, "/KUBE-DST-") {
			out = append(out, c)
		}
	}
	return out
}
