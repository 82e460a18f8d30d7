package hostile

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/kproxy/kproxy/controller"
	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/proxier/metrics"
	"github.com/kproxy/kproxy/test/envtest"
)

// Generous bounds for a shared 2-core machine under -race; the figures are logged.
const (
	firstSyncBudget = 45 * time.Second
	oneChangeBudget = 10 * time.Second
)

func TestHostileObjects(t *testing.T) {
	ctrl.SetLogger(logr.Discard())
	env := envtest.Start(t, envtest.Options{})
	ctx := context.Background()
	c := env.Client
	host, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}

	create(t, c, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}
	node.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: nodeIP}}
	create(t, c, node)
	// The valid neighbour every hostile slice above points at: it must keep exactly
	// its own endpoints whatever lands next to it.
	create(t, c, service("web", 80), slice("web-1", "web", "10.244.1.2", "10.244.2.2"))
	want := map[proxier.ServicePortName][]netip.AddrPort{port0("web"): addrPorts("10.244.1.2", "10.244.2.2")}

	kinds := hostileKinds(host.Hostname())
	var reported []string
	reaching := 0
	for _, k := range kinds {
		got := runSteps(ctx, t, c, k)
		if got {
			reaching++
		}
		reported = append(reported, k.reported...)
		for name, eps := range k.want {
			want[name] = eps
		}
	}
	t.Logf("%d kinds of hostile input, %d of them reach kproxy (the apiserver refuses the rest); %d objects must be reported",
		len(kinds), reaching, len(reported))
	if len(kinds) < 20 {
		t.Fatalf("only %d kinds", len(kinds))
	}

	m := metrics.New()
	rec := newRecorder()
	started := time.Now()
	startAgent(t, env, m, rec)
	st := rec.waitFor(t, firstSyncBudget, func(st *proxier.State) string { return modelDiff(st, want) })
	firstSync := time.Since(started)
	t.Logf("first complete sync, with %d endpoints for %s: %v", bigEndpoints, port0("big").ServiceName, firstSync)
	checkNode(t, st)

	// Every bad object that reached kproxy is counted once and gets one Event.
	waitForInvalid(t, m, len(reported))
	waitForEvents(t, c, reported)

	// Scaling the big Service by one endpoint is still cheap.
	var big discovery.EndpointSlice
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "big-3"}, &big); err != nil {
		t.Fatal(err)
	}
	removed := big.Endpoints[0].Addresses[0]
	big.Endpoints = big.Endpoints[1:]
	changed := time.Now()
	if err := c.Update(ctx, &big); err != nil {
		t.Fatal(err)
	}
	want[port0("big")] = slices.DeleteFunc(slices.Clone(want[port0("big")]), func(a netip.AddrPort) bool { return a.Addr().String() == removed })
	rec.waitFor(t, oneChangeBudget, func(st *proxier.State) string { return modelDiff(st, want) })
	t.Logf("one endpoint removed from a %d-endpoint Service: in the model after %v", bigEndpoints, time.Since(changed))

	// The orphaned slice counts as soon as its Service appears; and the new versions
	// of valid objects must not report anything again.
	create(t, c, service("ghost", 80))
	want[port0("ghost")] = addrPorts("10.244.5.1")
	rec.waitFor(t, oneChangeBudget, func(st *proxier.State) string { return modelDiff(st, want) })
	time.Sleep(time.Second) // let stray reports, if any, arrive
	if got := sumCounter(t, m.InvalidObjects); got != float64(len(reported)) {
		t.Errorf("invalid objects counted %v times after unrelated changes, want %d", got, len(reported))
	}
	waitForEvents(t, c, reported)
}

// runSteps performs one kind's writes, checking the apiserver accepts or refuses each
// as expected; it reports whether anything of the kind reached kproxy.
func runSteps(ctx context.Context, t *testing.T, c client.Client, k hostileKind) bool {
	t.Helper()
	reached := false
	for _, s := range k.steps {
		var err error
		if s.status {
			err = updateStatus(ctx, c, s.obj.(*v1.Service))
		} else {
			err = c.Create(ctx, s.obj)
		}
		switch {
		case s.rejected && err == nil:
			t.Errorf("%s: the apiserver accepted %T %s, which kproxy's test expects API validation to refuse", k.name, s.obj, s.obj.GetName())
			reached = true
		case s.rejected && !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err):
			t.Errorf("%s: %T %s: want a validation error, got %v", k.name, s.obj, s.obj.GetName(), err)
		case !s.rejected && err != nil:
			t.Fatalf("%s: creating %T %s: %v", k.name, s.obj, s.obj.GetName(), err)
		case !s.rejected:
			reached = true
		}
	}
	return reached
}

// updateStatus writes svc's status onto the stored Service.
func updateStatus(ctx context.Context, c client.Client, svc *v1.Service) error {
	cur := &v1.Service{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(svc), cur); err != nil {
		return err
	}
	cur.Status = svc.Status
	return c.Status().Update(ctx, cur)
}

// startAgent runs kproxy's controllers on a manager, with kproxy's cache options,
// the recorder as proxier and a node-port range narrower than the apiserver's.
func startAgent(t *testing.T, env *envtest.Env, m *metrics.Metrics, rec *recorder) {
	t.Helper()
	mgr, err := ctrl.NewManager(env.Config, manager.Options{
		Cache:                  controller.CacheOptions(nodeName),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Logger: funcr.New(func(prefix, args string) {
			if strings.Contains(args, "invalid") || strings.Contains(prefix, "invalid") {
				fmt.Fprintln(os.Stderr, prefix, args)
			}
		}, funcr.Options{}),
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = controller.Setup(mgr, controller.Options{
		NodeName: nodeName, Proxier: rec, WaitForNodeAddresses: true, Metrics: m,
		Builder: proxier.BuilderOptions{NodePortRange: proxier.PortRange{Min: 30000, Max: builderNPMax}},
		Runner:  proxier.RunnerOptions{MinSyncPeriod: 0, SyncPeriod: time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
}

// modelDiff says how the model's service ports in the test namespace differ from
// want, or "" when they match exactly: no port missing, none extra, and each with
// exactly its endpoints.
func modelDiff(st *proxier.State, want map[proxier.ServicePortName][]netip.AddrPort) string {
	var diffs []string
	seen := 0
	for _, sp := range st.ServicePorts() {
		if sp.Name.Namespace != ns {
			continue
		}
		seen++
		eps, ok := want[sp.Name]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("unexpected %s in the model", sp.Name))
			continue
		}
		got := make([]netip.AddrPort, 0, len(sp.Endpoints))
		for _, ep := range sp.Endpoints {
			got = append(got, ep.AddrPort())
		}
		if !slices.Equal(got, eps) {
			diffs = append(diffs, fmt.Sprintf("%s has %d endpoints %s, want %d %s", sp.Name, len(got), short(got), len(eps), short(eps)))
		}
	}
	for name := range want {
		if _, ok := st.Lookup(name); !ok {
			diffs = append(diffs, fmt.Sprintf("%s missing", name))
		}
	}
	if len(diffs) == 0 {
		return ""
	}
	slices.Sort(diffs)
	return fmt.Sprintf("%d of our service ports in the model; %s", seen, strings.Join(diffs, "; "))
}

func short(eps []netip.AddrPort) string {
	if len(eps) > 4 {
		return fmt.Sprintf("%v...", eps[:4])
	}
	return fmt.Sprint(eps)
}

// checkNode checks the node the model programs for.
func checkNode(t *testing.T, st *proxier.State) {
	t.Helper()
	if st.Node.Name != nodeName || !slices.Equal(st.Node.Addresses, []netip.Addr{netip.MustParseAddr(nodeIP)}) {
		t.Errorf("node in the model: %+v", st.Node)
	}
	ext, ok := st.Lookup(port0("ext-node"))
	if !ok || !slices.Equal(ext.ExternalIPs, []netip.Addr{netip.MustParseAddr(nodeIP)}) {
		t.Errorf("ext-node's external IPs: %+v", ext)
	}
}

// sumCounter adds up every series of a counter vector.
func sumCounter(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func waitForInvalid(t *testing.T, m *metrics.Metrics, want int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for sumCounter(t, m.InvalidObjects) < float64(want) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // a double count would show up by now
	if got := sumCounter(t, m.InvalidObjects); got != float64(want) {
		t.Errorf("kproxy_invalid_objects_total = %v, want %d (one per bad object that reached kproxy)", got, want)
	}
}

// waitForEvents waits until each reported object has its Event and checks that no
// object has more than one and nothing else got one. An EndpointSlice's Event is
// about its Service when that exists, with the slice as the related object.
func waitForEvents(t *testing.T, c client.Client, reported []string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var list eventsv1.EventList
		if err := c.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for _, ev := range list.Items {
			if !strings.HasPrefix(ev.Reason, "Invalid") {
				continue
			}
			about := ev.Regarding
			if ev.Related != nil {
				about = *ev.Related
			}
			n := 1
			if ev.Series != nil {
				n = int(ev.Series.Count)
			}
			got[about.Kind+"/"+about.Name] += n
		}
		var problems []string
		for _, r := range reported {
			if got[r] != 1 {
				problems = append(problems, fmt.Sprintf("%s has %d Events", r, got[r]))
			}
		}
		for k, n := range got {
			if !slices.Contains(reported, k) {
				problems = append(problems, fmt.Sprintf("%s, not a bad object, has %d Events", k, n))
			}
		}
		if len(problems) == 0 {
			return
		}
		if time.Now().After(deadline) {
			slices.Sort(problems)
			t.Fatalf("Events: %s", strings.Join(problems, "; "))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func create(t *testing.T, c client.Client, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := c.Create(context.Background(), o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}
