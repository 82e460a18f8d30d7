package reliability

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kproxy/kproxy/test/envtest"
	"github.com/kproxy/kproxy/test/netns"
)

// outage is how long the API server stays down, as issue #8 asks.
const outage = 60 * time.Second

// TestAPIServerOutage stops the API server for a minute under traffic and starts it
// again at the same address with the same certificates, so kproxy reconnects on its
// own. While it is down, kproxy's rules must not change, not one new connection may
// fail, and /healthz must keep reporting a healthy proxy, which it is: the periodic
// syncs (every 5 s here) keep succeeding from the model kproxy holds. Changes made
// right after the restart (an EndpointSlice scaled up, a new Service) must be
// programmed by the same kproxy process.
func TestAPIServerOutage(t *testing.T) {
	t.Parallel()
	// Without this, the stopping API server withdraws its own endpoint from the
	// default/kubernetes Service, a last change that may or may not reach kproxy
	// before the connection closes.
	w := newWorld(t, envtest.Options{NoEndpointReconciler: true})
	p := w.startProxy(t, "kproxy", kproxyV1)
	w.waitServing(t, p)
	w.waitSynced(t, p)
	conn := w.openLongLived(t, w.targets()[0])
	pr := startProber(t, w.client.NS, w.targets()...)
	health := w.watchHealth()
	t.Cleanup(func() { health.Stop() })
	time.Sleep(time.Second)
	before := w.saveRules(t)

	pr.Mark("API server stopping")
	if err := w.env.StopAPIServer(); err != nil {
		t.Fatalf("stopping the API server: %v", err)
	}
	stopped := time.Now()
	pr.Mark("API server stopped")
	if err := w.apiReachable(); err == nil {
		t.Fatal("the API server still answers after StopAPIServer")
	}
	for time.Since(stopped) < outage {
		time.Sleep(min(5*time.Second, outage-time.Since(stopped)))
		if d := before.diff(w.saveRules(t)); d != "" {
			t.Errorf("the rules changed %s into the outage:\n%s", time.Since(stopped).Round(time.Second), d)
		}
		if err := p.alive(); err != nil {
			t.Fatal(err)
		}
	}
	w.requireRecentSync(t, stopped)
	conn.check(t, "during the API server outage")

	pr.Mark("API server starting")
	if err := w.env.StartAPIServer(); err != nil {
		t.Fatalf("restarting the API server: %v", err)
	}
	restarted := time.Now()
	pr.Mark("API server started")
	if err := w.apiReachable(); err != nil {
		t.Fatalf("the restarted API server does not answer: %v", err)
	}

	// Changes kproxy can only learn about by reconnecting.
	local0, local1, remote0 := w.node.Pods[0], w.node.Pods[1], w.topo.Remote.Pods[0]
	w.setSliceEndpoints(t, "cip", local0, remote0, local1)
	late := service("late", v1.ServiceTypeClusterIP)
	w.create(t, late, w.endpointSlice("late", remote0))
	lateAddr := netip.AddrPortFrom(netip.MustParseAddr(late.Spec.ClusterIP), 80)
	netns.Eventually(t, 90*time.Second, "the Service created after the restart answers", func() error {
		if err := p.alive(); err != nil {
			return err
		}
		_, err := w.client.DialTCP(t.Context(), lateAddr, time.Second)
		return err
	})
	netns.Eventually(t, 30*time.Second, "the endpoint added after the restart answers", func() error {
		rep, err := w.client.DialTCP(t.Context(), w.clusterIP, time.Second)
		if err == nil && rep.Server != local1.Label {
			err = fmt.Errorf("answered by %s", rep.Server)
		}
		return err
	})
	t.Logf("kproxy converged on the changes %s after the API server restarted", time.Since(restarted).Round(100*time.Millisecond))
	pr.Mark("converged")
	time.Sleep(time.Second)

	conn.check(t, "after the API server outage")
	pr.RequireNoFailures(t)
	polls, bad := health.Stop()
	t.Logf("/healthz: %d polls", polls)
	for _, b := range bad {
		t.Errorf("/healthz did not report a healthy proxy at %s", b)
	}
	if polls < int(outage/time.Second) {
		t.Errorf("/healthz was polled only %d times", polls)
	}
	if err := p.alive(); err != nil {
		t.Errorf("kproxy must ride out the outage without restarting: %v", err)
	}
}

// apiReachable asks the API server for its version with a short deadline.
func (w *world) apiReachable() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return w.env.Client.Get(ctx, client.ObjectKey{Name: "default"}, &v1.Namespace{})
}

// requireRecentSync checks, through kproxy's metrics, that its last successful sync
// happened after since and within two sync periods: syncs went on while the API
// server was down, which is why /healthz rightly stayed healthy.
func (w *world) requireRecentSync(t *testing.T, since time.Time) {
	t.Helper()
	m, err := w.metrics()
	if err != nil {
		t.Fatal(err)
	}
	last := metricMax(m, "kubeproxy_sync_proxy_rules_last_timestamp_seconds")
	at := time.Unix(0, int64(last*1e9))
	if at.Before(since) || time.Since(at) > 2*syncPeriod {
		t.Errorf("kproxy's last sync was at %s (outage since %s, now %s): periodic syncs stopped during the outage",
			at.Format(time.TimeOnly), since.Format(time.TimeOnly), time.Now().Format(time.TimeOnly))
	}
	if f := metric(m, "kubeproxy_sync_proxy_rules_iptables_restore_failures_total"); f != 0 {
		t.Errorf("%v iptables-restore failures", f)
	}
}
