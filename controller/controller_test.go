package controller_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/kproxy/kproxy/controller"
	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/proxier/metrics"
	"github.com/kproxy/kproxy/test/envtest"
)

// One control plane serves every test in this package; each test uses its own
// namespace and node name.
var env *envtest.Env

func startEnv(t *testing.T) *envtest.Env {
	t.Helper()
	if env == nil {
		t.Fatal("envtest not started")
	}
	return env
}

func TestMain(m *testing.M) { runWithEnv(m) }

func setupAgent(t *testing.T, nodeName string, m *metrics.Metrics) *syncRecorder {
	t.Helper()
	rec := newSyncRecorder()
	newManager(t, startEnv(t), nodeName, func(mgr manager.Manager) {
		opts := controller.Options{NodeName: nodeName, Proxier: rec, WaitForNodeAddresses: true, Metrics: m,
			Runner: proxier.RunnerOptions{MinSyncPeriod: 0, SyncPeriod: time.Hour}}
		if m != nil {
			opts.Runner.Observers = []proxier.SyncObserver{m}
		}
		if _, err := controller.Setup(mgr, opts); err != nil {
			t.Fatal(err)
		}
	})
	return rec
}

func TestCreateUpdateDeleteProduceSnapshotsAndChangeSets(t *testing.T) {
	e := startEnv(t)
	ctx := context.Background()
	ns, nodeName := "crud", "node-crud"
	createNamespace(t, e, ns)
	mustCreate(t, e, node(nodeName, "192.0.2.10"))
	web, api := service(ns, "web", 80), service(ns, "api", 8080)
	mustCreate(t, e, web, api)
	mustCreate(t, e, slice(ns, "web-1", "web", 8080, nodeName, "10.244.1.2", "10.244.1.3"),
		slice(ns, "api-1", "api", 9090, "other", "10.244.2.2"))

	rec := setupAgent(t, nodeName, nil)
	first := rec.waitFor(t, 0, "both services have endpoints", func(s recordedSync) bool {
		w, ok1 := s.state.Lookup(portName(ns, "web"))
		a, ok2 := s.state.Lookup(portName(ns, "api"))
		return ok1 && ok2 && len(w.Endpoints) == 2 && len(a.Endpoints) == 1
	})
	if first != 0 || !rec.syncs[0].changes.Full {
		t.Errorf("the first sync must be full and already complete (primed model); got sync #%d full=%v", first, rec.syncs[0].changes.Full)
	}
	st := rec.syncs[first].state
	if got := st.Node.Addresses; len(got) != 1 || got[0] != netip.MustParseAddr("192.0.2.10") {
		t.Errorf("node addresses = %v", got)
	}
	w, _ := st.Lookup(portName(ns, "web"))
	if !w.Endpoints[0].Local || w.Endpoints[0].Port != 8080 || len(w.ClusterIPs) != 1 {
		t.Errorf("web = %+v", w)
	}

	// Scale web down to one endpoint: only web changes.
	s := &discovery.EndpointSlice{}
	if err := e.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web-1"}, s); err != nil {
		t.Fatal(err)
	}
	s.Endpoints = s.Endpoints[:1]
	s.Annotations = map[string]string{proxier.AnnotationTriggerTime: time.Now().UTC().Format(time.RFC3339Nano)}
	if err := e.Client.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
	i := rec.waitFor(t, first+1, "web has one endpoint", func(s recordedSync) bool {
		w, ok := s.state.Lookup(portName(ns, "web"))
		return ok && len(w.Endpoints) == 1
	})
	cs := rec.syncs[i].changes
	if cs.Full || len(cs.Services) != 1 || !cs.Has(portName(ns, "web")) {
		t.Errorf("change set after scaling web = %+v, want only web", cs)
	}
	if _, ok := cs.TriggerTimes[proxier.ServiceName{Namespace: ns, Name: "web"}]; !ok {
		t.Errorf("trigger time of the slice update missing: %+v", cs.TriggerTimes)
	}
	if a1, _ := rec.syncs[first].state.Lookup(portName(ns, "api")); true {
		a2, _ := rec.syncs[i].state.Lookup(portName(ns, "api"))
		if a1 != a2 {
			t.Error("unchanged service api must keep its ServicePort pointer across snapshots")
		}
	}

	// Change api's port: only api changes.
	if err := e.Client.Get(ctx, client.ObjectKeyFromObject(api), api); err != nil {
		t.Fatal(err)
	}
	api.Spec.Ports[0].Port = 8081
	if err := e.Client.Update(ctx, api); err != nil {
		t.Fatal(err)
	}
	i = rec.waitFor(t, i+1, "api port is 8081", func(s recordedSync) bool {
		a, ok := s.state.Lookup(portName(ns, "api"))
		return ok && a.Port == 8081
	})
	if cs := rec.syncs[i].changes; len(cs.Services) != 1 || !cs.Has(portName(ns, "api")) {
		t.Errorf("change set after updating api = %+v", cs)
	}

	// Delete web: it is in the change set and gone from the state.
	if err := e.Client.Delete(ctx, web); err != nil {
		t.Fatal(err)
	}
	i = rec.waitFor(t, i+1, "web is gone", func(s recordedSync) bool {
		_, ok := s.state.Lookup(portName(ns, "web"))
		return !ok
	})
	if cs := rec.syncs[i].changes; !cs.Has(portName(ns, "web")) || cs.Full {
		t.Errorf("change set after deleting web = %+v", cs)
	}
	if _, ok := rec.syncs[i].state.Lookup(portName(ns, "api")); !ok {
		t.Error("api disappeared")
	}
}

func TestIgnoredServicesAreNotProgrammed(t *testing.T) {
	e := startEnv(t)
	ns, nodeName := "ignored", "node-ignored"
	createNamespace(t, e, ns)
	mustCreate(t, e, node(nodeName, "192.0.2.11"))
	headless := service(ns, "headless", 80)
	headless.Spec.ClusterIP = v1.ClusterIPNone
	extName := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "extname"},
		Spec: v1.ServiceSpec{Type: v1.ServiceTypeExternalName, ExternalName: "example.invalid"}}
	other := service(ns, "other-proxy", 80)
	other.Labels = map[string]string{proxier.LabelServiceProxyName: "someone-else"}
	plain := service(ns, "plain", 80)
	mustCreate(t, e, headless, extName, other, plain)

	rec := setupAgent(t, nodeName, nil)
	i := rec.waitFor(t, 0, "plain is present", func(s recordedSync) bool {
		_, ok := s.state.Lookup(portName(ns, "plain"))
		return ok
	})
	for _, n := range []string{"headless", "extname", "other-proxy"} {
		if _, ok := rec.syncs[i].state.Lookup(portName(ns, n)); ok {
			t.Errorf("%s must be ignored", n)
		}
	}

	// Relabelling a service for another proxy removes it.
	if err := e.Client.Get(context.Background(), client.ObjectKeyFromObject(plain), plain); err != nil {
		t.Fatal(err)
	}
	plain.Labels = map[string]string{proxier.LabelServiceProxyName: "someone-else"}
	if err := e.Client.Update(context.Background(), plain); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, i+1, "plain is gone after relabelling", func(s recordedSync) bool {
		_, ok := s.state.Lookup(portName(ns, "plain"))
		return !ok
	})
}

// An embedder's cache may hold every Service: relabelling one for another proxy is then
// an update, not a deletion from the cache, and must still take it out of the model.
func TestRelabelledServiceLeavesModelWithUnfilteredCache(t *testing.T) {
	e := startEnv(t)
	ctx := context.Background()
	ns, nodeName := "relabel", "node-relabel"
	createNamespace(t, e, ns)
	mustCreate(t, e, node(nodeName, "192.0.2.13"))
	svc := service(ns, "web", 80)
	mustCreate(t, e, svc)

	rec := newSyncRecorder()
	newManagerWithCache(t, e, cache.Options{}, func(mgr manager.Manager) {
		if _, err := controller.Setup(mgr, controller.Options{NodeName: nodeName, Proxier: rec,
			Runner: proxier.RunnerOptions{MinSyncPeriod: 0, SyncPeriod: time.Hour}}); err != nil {
			t.Fatal(err)
		}
	})
	rec.waitFor(t, 0, "web is present", func(s recordedSync) bool {
		_, ok := s.state.Lookup(portName(ns, "web"))
		return ok
	})
	// Change the port and wait for it, so that no reconcile of an earlier event is
	// still queued when the relabelling lands: the relabelling alone must do it.
	if err := e.Client.Get(ctx, client.ObjectKeyFromObject(svc), svc); err != nil {
		t.Fatal(err)
	}
	svc.Spec.Ports[0].Port = 81
	if err := e.Client.Update(ctx, svc); err != nil {
		t.Fatal(err)
	}
	i := rec.waitFor(t, 0, "web listens on 81", func(s recordedSync) bool {
		sp, ok := s.state.Lookup(portName(ns, "web"))
		return ok && sp.Port == 81
	})
	svc.Labels = map[string]string{proxier.LabelServiceProxyName: "someone-else"}
	if err := e.Client.Update(ctx, svc); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, i+1, "web is gone after relabelling", func(s recordedSync) bool {
		_, ok := s.state.Lookup(portName(ns, "web"))
		return !ok
	})
}

func TestMalformedObjectsAreSkippedAndReported(t *testing.T) {
	e := startEnv(t)
	ctx := context.Background()
	ns, nodeName := "malformed", "node-malformed"
	createNamespace(t, e, ns)
	mustCreate(t, e, node(nodeName, "192.0.2.12"))
	good, victim := service(ns, "good", 80), service(ns, "victim", 80)
	mustCreate(t, e, good, victim)
	// All of these pass API validation but cannot be programmed.
	noLabel := slice(ns, "no-service-label", "", 80, nodeName, "10.244.1.9")
	noLabel.Labels = nil
	noPort := slice(ns, "victim-no-port", "victim", 80, nodeName, "10.244.1.10")
	noPort.Ports[0].Port = nil
	mustCreate(t, e, slice(ns, "good-1", "good", 8080, nodeName, "10.244.1.2"), noLabel, noPort,
		slice(ns, "victim-ok", "victim", 8080, nodeName, "10.244.1.11"))

	m := metrics.New()
	rec := setupAgent(t, nodeName, m)
	i := rec.waitFor(t, 0, "good and victim are programmed from their valid slices", func(s recordedSync) bool {
		g, ok1 := s.state.Lookup(portName(ns, "good"))
		v, ok2 := s.state.Lookup(portName(ns, "victim"))
		return ok1 && ok2 && len(g.Endpoints) == 1 && len(v.Endpoints) == 1
	})
	if v, _ := rec.syncs[i].state.Lookup(portName(ns, "victim")); v.Endpoints[0].Addr != netip.MustParseAddr("10.244.1.11") {
		t.Errorf("victim endpoints = %v, the slice without a port must not count", v.Endpoints)
	}

	waitForMetric(t, m.InvalidObjects.WithLabelValues("EndpointSlice", "FieldValueRequired"), 2)
	// The event for the portless slice lands on its Service.
	waitForEvent(t, e, ns, "victim", "InvalidEndpointSlice")
	waitForEvent(t, e, ns, "no-service-label", "InvalidEndpointSlice")

	// Reconciling the same version again reports nothing new.
	var sl discovery.EndpointSlice
	if err := e.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "good-1"}, &sl); err != nil {
		t.Fatal(err)
	}
	sl.Endpoints = append(sl.Endpoints, discovery.Endpoint{Addresses: []string{"10.244.1.3"}})
	if err := e.Client.Update(ctx, &sl); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, i+1, "good has two endpoints", func(s recordedSync) bool {
		g, ok := s.state.Lookup(portName(ns, "good"))
		return ok && len(g.Endpoints) == 2
	})
	if got := testutil.ToFloat64(m.InvalidObjects.WithLabelValues("EndpointSlice", "FieldValueRequired")); got != 2 {
		t.Errorf("invalid objects counted %v times, want 2 (once each)", got)
	}

	// Fixing the bad slice brings its endpoint in.
	if err := e.Client.Get(ctx, client.ObjectKeyFromObject(noPort), noPort); err != nil {
		t.Fatal(err)
	}
	noPort.Ports[0].Port = ptr.To[int32](8080)
	if err := e.Client.Update(ctx, noPort); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, i+1, "victim has both endpoints once its slice is fixed", func(s recordedSync) bool {
		v, ok := s.state.Lookup(portName(ns, "victim"))
		return ok && len(v.Endpoints) == 2
	})
}

func TestEmbedderCustomProxierOnExistingManager(t *testing.T) {
	e := startEnv(t)
	ns, nodeName := "embed", "node-embed"
	createNamespace(t, e, ns)
	mustCreate(t, e, node(nodeName, "192.0.2.13"), service(ns, "svc", 53))

	got := make(chan *proxier.State, 16)
	newManager(t, e, nodeName, func(mgr manager.Manager) {
		// The embedder's own runnable shares the manager with kproxy.
		ownStarted := make(chan struct{})
		if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
			close(ownStarted)
			<-ctx.Done()
			return nil
		})); err != nil {
			t.Fatal(err)
		}
		_, err := controller.Setup(mgr, controller.Options{NodeName: nodeName,
			Proxier: proxier.ProxierFunc(func(_ context.Context, s *proxier.State, _ proxier.ChangeSet) error {
				got <- s
				return nil
			})})
		if err != nil {
			t.Fatal(err)
		}
	})
	select {
	case s := <-got:
		if _, ok := s.Lookup(portName(ns, "svc")); !ok {
			t.Errorf("custom proxier got a snapshot without ns/svc: %d ports", s.Len())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the custom proxier never received a snapshot")
	}
}

func waitForMetric(t *testing.T, c prometheus.Collector, want float64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for testutil.ToFloat64(c) < want {
		if time.Now().After(deadline) {
			t.Fatalf("metric = %v, want %v", testutil.ToFloat64(c), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitForEvent(t *testing.T, e *envtest.Env, ns, regarding, reason string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var list eventsv1.EventList
		if err := e.Client.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		for _, ev := range list.Items {
			if ev.Regarding.Name == regarding && ev.Reason == reason {
				if !strings.Contains(ev.Note, "ignored") {
					t.Errorf("event note %q does not say the object was ignored", ev.Note)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event regarding %s/%s (have %d events)", reason, ns, regarding, len(list.Items))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
