package daemonset

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/kproxy/kproxy/controller"
	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/test/envtest"
)

// The ServiceAccount the manifests create, as the API server names its user.
const saUser = "system:serviceaccount:kube-system:kproxy"

// asServiceAccount returns a client configuration that impersonates kproxy's
// ServiceAccount: every request is authorized as if the DaemonSet's Pod made it.
func asServiceAccount(env *envtest.Env) *rest.Config {
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: saUser}
	return cfg
}

// fixture is what the permission tests work on, created with admin rights.
type fixture struct {
	ns, node, svc string
}

func newFixture(t *testing.T, env *envtest.Env) fixture {
	t.Helper()
	f := fixture{ns: "kproxy-rbac", node: "kproxy-rbac-node", svc: "web"}
	ctx := context.Background()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: f.node}}
	node.Spec.PodCIDRs = []string{"10.244.1.0/24"}
	node.Spec.PodCIDR = "10.244.1.0/24"
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.10"}}
	port, ready := int32(8080), true
	portName, tcp := "http", corev1.ProtocolTCP
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.ns}},
		node,
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: f.svc},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: portName, Port: 80, Protocol: tcp}}}},
		&discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: f.ns, Name: f.svc + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: f.svc}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port, Protocol: &tcp}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.244.1.5"}, NodeName: &f.node,
				Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "secret"}, StringData: map[string]string{"k": "v"}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "cm"}},
	}
	for _, o := range objs {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
	if err := env.Client.Status().Update(ctx, node); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestServiceAccountCanOnlyDoWhatKproxyNeeds makes real requests as the ServiceAccount:
// everything kproxy does must be allowed, and a sample of what it must not do must be
// forbidden by the API server's RBAC authorizer.
func TestServiceAccountCanOnlyDoWhatKproxyNeeds(t *testing.T) {
	env, _ := applyAll(t)
	f := newFixture(t, env)
	cs, err := kubernetes.NewForConfig(asServiceAccount(env))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	list := metav1.ListOptions{Limit: 1}
	watch := metav1.ListOptions{Watch: true, TimeoutSeconds: ptrTo[int64](1)}
	watched := func(w interface{ Stop() }, err error) error {
		if err == nil {
			w.Stop()
		}
		return err
	}
	event := func(name string) *eventsv1.Event {
		return &eventsv1.Event{
			ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: name},
			EventTime:  metav1.NowMicro(), ReportingController: "kproxy", ReportingInstance: "kproxy-" + f.node,
			Action: "ProgramProxyRules", Reason: "RBACCheck", Type: corev1.EventTypeNormal, Note: "permission check",
			Regarding: corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: f.ns, Name: f.svc},
		}
	}

	allowed := []struct {
		name string
		do   func() error
	}{
		{"list services in all namespaces", func() error { _, err := cs.CoreV1().Services("").List(ctx, list); return err }},
		{"watch services", func() error { return watched(cs.CoreV1().Services("").Watch(ctx, watch)) }},
		{"list endpointslices", func() error { _, err := cs.DiscoveryV1().EndpointSlices("").List(ctx, list); return err }},
		{"watch endpointslices", func() error { return watched(cs.DiscoveryV1().EndpointSlices("").Watch(ctx, watch)) }},
		{"list nodes by name", func() error {
			_, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + f.node})
			return err
		}},
		{"watch nodes", func() error { return watched(cs.CoreV1().Nodes().Watch(ctx, watch)) }},
		{"get its node", func() error { _, err := cs.CoreV1().Nodes().Get(ctx, f.node, metav1.GetOptions{}); return err }},
		{"create an events.k8s.io event", func() error {
			_, err := cs.EventsV1().Events(f.ns).Create(ctx, event("rbac-check"), metav1.CreateOptions{})
			return err
		}},
		{"patch an events.k8s.io event into a series", func() error {
			patch := fmt.Sprintf(`{"series":{"count":2,"lastObservedTime":%q}}`, metav1.NowMicro().Format(metav1.RFC3339Micro))
			_, err := cs.EventsV1().Events(f.ns).Patch(ctx, "rbac-check", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
			return err
		}},
	}
	for _, c := range allowed {
		if err := c.do(); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}

	svc, err := func() (*corev1.Service, error) {
		s := &corev1.Service{}
		return s, env.Client.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: f.svc}, s)
	}()
	if err != nil {
		t.Fatal(err)
	}
	mergePatch := []byte(`{"metadata":{"labels":{"touched":"yes"}}}`)
	forbidden := []struct {
		name string
		do   func() error
	}{
		{"list secrets", func() error { _, err := cs.CoreV1().Secrets("").List(ctx, list); return err }},
		{"get a secret", func() error { _, err := cs.CoreV1().Secrets(f.ns).Get(ctx, "secret", metav1.GetOptions{}); return err }},
		{"list configmaps", func() error { _, err := cs.CoreV1().ConfigMaps("").List(ctx, list); return err }},
		{"list pods", func() error { _, err := cs.CoreV1().Pods("").List(ctx, list); return err }},
		{"list endpoints", func() error { _, err := cs.CoreV1().Endpoints("").List(ctx, list); return err }},
		{"get a service", func() error { _, err := cs.CoreV1().Services(f.ns).Get(ctx, f.svc, metav1.GetOptions{}); return err }},
		{"update a service", func() error {
			_, err := cs.CoreV1().Services(f.ns).Update(ctx, svc, metav1.UpdateOptions{})
			return err
		}},
		{"patch a service", func() error {
			_, err := cs.CoreV1().Services(f.ns).Patch(ctx, f.svc, types.MergePatchType, mergePatch, metav1.PatchOptions{})
			return err
		}},
		{"delete a service", func() error { return cs.CoreV1().Services(f.ns).Delete(ctx, f.svc, metav1.DeleteOptions{}) }},
		{"create a service", func() error {
			_, err := cs.CoreV1().Services(f.ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "new"},
				Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 1}}}}, metav1.CreateOptions{})
			return err
		}},
		{"get an endpointslice", func() error {
			_, err := cs.DiscoveryV1().EndpointSlices(f.ns).Get(ctx, f.svc+"-1", metav1.GetOptions{})
			return err
		}},
		{"patch an endpointslice", func() error {
			_, err := cs.DiscoveryV1().EndpointSlices(f.ns).Patch(ctx, f.svc+"-1", types.MergePatchType, mergePatch, metav1.PatchOptions{})
			return err
		}},
		{"patch a node", func() error {
			_, err := cs.CoreV1().Nodes().Patch(ctx, f.node, types.MergePatchType, mergePatch, metav1.PatchOptions{})
			return err
		}},
		{"patch a node's status", func() error {
			_, err := cs.CoreV1().Nodes().Patch(ctx, f.node, types.MergePatchType, mergePatch, metav1.PatchOptions{}, "status")
			return err
		}},
		{"delete a node", func() error { return cs.CoreV1().Nodes().Delete(ctx, f.node, metav1.DeleteOptions{}) }},
		{"create a core event", func() error {
			_, err := cs.CoreV1().Events(f.ns).Create(ctx, &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "core"},
				InvolvedObject: corev1.ObjectReference{Kind: "Service", Namespace: f.ns, Name: f.svc}}, metav1.CreateOptions{})
			return err
		}},
		{"list events", func() error { _, err := cs.EventsV1().Events("").List(ctx, list); return err }},
		{"update an event", func() error {
			_, err := cs.EventsV1().Events(f.ns).Update(ctx, event("rbac-check"), metav1.UpdateOptions{})
			return err
		}},
		{"delete an event", func() error { return cs.EventsV1().Events(f.ns).Delete(ctx, "rbac-check", metav1.DeleteOptions{}) }},
		{"create a pod", func() error {
			_, err := cs.CoreV1().Pods(f.ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}, metav1.CreateOptions{})
			return err
		}},
	}
	for _, c := range forbidden {
		if err := c.do(); !apierrors.IsForbidden(err) {
			t.Errorf("%s: got %v, want Forbidden", c.name, err)
		}
	}
}

// TestKproxyAgentRunsWithTheServiceAccount runs kproxy's own watch code (its trimmed
// cache, its controllers and controller-runtime's event recorder) under the
// ServiceAccount, so a permission the code needs but the ClusterRole lacks fails here
// rather than on a node.
func TestKproxyAgentRunsWithTheServiceAccount(t *testing.T) {
	env, _ := applyAll(t)
	f := newFixture(t, env)
	ctx := context.Background()

	// A slice that passes API validation but cannot be programmed (no port): kproxy
	// reports it with an Event on its Service.
	tcp := corev1.ProtocolTCP
	bad := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: f.ns, Name: f.svc + "-bad", Labels: map[string]string{discoveryv1.LabelServiceName: f.svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Protocol: &tcp}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.1.6"}}},
	}
	if err := env.Client.Create(ctx, bad); err != nil {
		t.Fatal(err)
	}

	mgr, err := ctrl.NewManager(asServiceAccount(env), manager.Options{
		Cache:                  controller.CacheOptions(f.node),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// Errors only (a denied request shows up here), and not testr: client-go's event
		// broadcaster may log after the test ends.
		Logger: funcr.New(func(prefix, args string) {
			if strings.Contains(args, `"error"=`) {
				fmt.Fprintln(os.Stderr, prefix, args)
			}
		}, funcr.Options{}),
		Controller: crconfig.Controller{SkipNameValidation: ptrTo(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	states := make(chan *proxier.State, 64)
	if _, err := controller.Setup(mgr, controller.Options{
		NodeName:             f.node,
		WaitForNodeAddresses: true,
		Proxier: proxier.ProxierFunc(func(_ context.Context, s *proxier.State, _ proxier.ChangeSet) error {
			select {
			case states <- s:
			default:
			}
			return nil
		}),
		Runner: proxier.RunnerOptions{SyncPeriod: time.Hour},
	}); err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})

	// The model is built from the cache, which lists and watches as the ServiceAccount.
	want := proxier.ServicePortName{ServiceName: proxier.ServiceName{Namespace: f.ns, Name: f.svc}, Port: "http", Protocol: proxier.ProtocolTCP}
	deadline := time.After(60 * time.Second)
	for synced := false; !synced; {
		select {
		case s := <-states:
			sp, ok := s.Lookup(want)
			synced = ok && len(sp.Endpoints) == 1
		case <-deadline:
			t.Fatalf("no sync with %v and its endpoint: can the ServiceAccount list and watch what kproxy caches?", want)
		}
	}

	// kproxy's invalid-object report is an events.k8s.io Event created as the account.
	waitForEvent(t, env, f.ns, func(ev eventsv1.Event) bool {
		return ev.Reason == "InvalidEndpointSlice" && ev.Regarding.Name == f.svc && ev.ReportingController == "kproxy"
	}, "kproxy's InvalidEndpointSlice event")

	// The recorder turns a repeated Event into a series with a patch.
	rec := mgr.GetEventRecorder("kproxy")
	svc := &corev1.Service{}
	if err := mgr.GetAPIReader().Get(ctx, client.ObjectKey{Namespace: f.ns, Name: f.svc}, svc); !apierrors.IsForbidden(err) {
		t.Errorf("getting the Service directly as the ServiceAccount: got %v, want Forbidden (kproxy reads from its cache)", err)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: f.svc}, svc); err != nil {
		t.Fatal(err)
	}
	rec.Eventf(svc, nil, corev1.EventTypeWarning, "RecorderCheck", "ProgramProxyRules", "repeated %s", "warning")
	waitForEvent(t, env, f.ns, func(ev eventsv1.Event) bool { return ev.Reason == "RecorderCheck" }, "the first RecorderCheck event")
	rec.Eventf(svc, nil, corev1.EventTypeWarning, "RecorderCheck", "ProgramProxyRules", "repeated %s", "warning")
	waitForEvent(t, env, f.ns, func(ev eventsv1.Event) bool {
		return ev.Reason == "RecorderCheck" && ev.Series != nil && ev.Series.Count >= 2
	}, "the RecorderCheck event patched into a series")
}

func waitForEvent(t *testing.T, env *envtest.Env, ns string, match func(eventsv1.Event) bool, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var list eventsv1.EventList
		if err := env.Client.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		for _, ev := range list.Items {
			if match(ev) {
				return
			}
		}
		if time.Now().After(deadline) {
			var have []string
			for _, ev := range list.Items {
				have = append(have, ev.Reason+" on "+ev.Regarding.Name)
			}
			t.Fatalf("no %s in namespace %s (have: %s)", what, ns, strings.Join(have, ", "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
