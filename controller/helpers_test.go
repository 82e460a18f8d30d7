package controller_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/kproxy/kproxy/controller"
	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/test/envtest"
)

// syncRecorder is a Proxier that remembers every sync, so tests can wait for the model
// to reach a state.
type syncRecorder struct {
	mu    sync.Mutex
	syncs []recordedSync
	wake  chan struct{}
}

type recordedSync struct {
	state   *proxier.State
	changes proxier.ChangeSet
}

func newSyncRecorder() *syncRecorder { return &syncRecorder{wake: make(chan struct{}, 1)} }

func (r *syncRecorder) Sync(_ context.Context, s *proxier.State, c proxier.ChangeSet) error {
	r.mu.Lock()
	r.syncs = append(r.syncs, recordedSync{s, c})
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return nil
}

func (r *syncRecorder) Cleanup(context.Context) error { return nil }

// waitFor waits until a sync after index `from` satisfies cond and returns its index.
func (r *syncRecorder) waitFor(t *testing.T, from int, what string, cond func(recordedSync) bool) int {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		r.mu.Lock()
		for i := from; i < len(r.syncs); i++ {
			if cond(r.syncs[i]) {
				r.mu.Unlock()
				return i
			}
		}
		n := len(r.syncs)
		last := "none"
		if n > 0 {
			last = describe(r.syncs[n-1])
		}
		r.mu.Unlock()
		select {
		case <-r.wake:
		case <-deadline:
			t.Fatalf("timed out waiting for a sync where %s (%d syncs seen; the last: %s)", what, n, last)
		}
	}
}

// describe summarises a sync for a timeout message: which service ports it held, with
// their endpoint counts.
func describe(s recordedSync) string {
	var b strings.Builder
	fmt.Fprintf(&b, "generation %d, full=%v, %d changed:", s.state.Generation, s.changes.Full, len(s.changes.Services))
	for _, sp := range s.state.ServicePorts() {
		fmt.Fprintf(&b, " %s(%d)", sp.Name, len(sp.Endpoints))
	}
	return b.String()
}

// newManager returns a manager on env with kproxy's cache options and no metrics or
// health listeners, started in the background and stopped in t.Cleanup.
func newManager(t *testing.T, env *envtest.Env, nodeName string, setup func(manager.Manager)) {
	t.Helper()
	newManagerWithCache(t, env, controller.CacheOptions(nodeName), setup)
}

// newManagerWithCache is newManager with the caller's cache options.
func newManagerWithCache(t *testing.T, env *envtest.Env, cacheOpts cache.Options, setup func(manager.Manager)) {
	t.Helper()
	mgr, err := ctrl.NewManager(env.Config, manager.Options{
		Cache:                  cacheOpts,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// Not testr: client-go's event broadcaster logs after a test ends.
		Logger: funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{Verbosity: 1}),
		// Tests run several managers in one process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	setup(mgr)
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

func node(name string, addrs ...string) *v1.Node {
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{proxier.LabelTopologyZone: "zone-a"}}}
	n.Spec.PodCIDRs = []string{"10.244.1.0/24"}
	n.Spec.PodCIDR = "10.244.1.0/24"
	for _, a := range addrs {
		n.Status.Addresses = append(n.Status.Addresses, v1.NodeAddress{Type: v1.NodeInternalIP, Address: a})
	}
	return n
}

func service(ns, name string, ports ...int32) *v1.Service {
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for i, p := range ports {
		svc.Spec.Ports = append(svc.Spec.Ports, v1.ServicePort{Name: fmt.Sprintf("p%d", i), Port: p, Protocol: v1.ProtocolTCP})
	}
	return svc
}

func slice(ns, name, svcName string, port int32, nodeName string, ips ...string) *discovery.EndpointSlice {
	s := &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{proxier.LabelServiceName: svcName}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: ptr.To("p0"), Port: ptr.To(port), Protocol: ptr.To(v1.ProtocolTCP)}},
	}
	for _, ip := range ips {
		s.Endpoints = append(s.Endpoints, discovery.Endpoint{Addresses: []string{ip}, NodeName: ptr.To(nodeName),
			Conditions: discovery.EndpointConditions{Ready: ptr.To(true)}})
	}
	return s
}

func portName(ns, name string) proxier.ServicePortName {
	return proxier.ServicePortName{ServiceName: proxier.ServiceName{Namespace: ns, Name: name}, Port: "p0", Protocol: proxier.ProtocolTCP}
}

func mustCreate(t *testing.T, env *envtest.Env, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := env.Client.Create(context.Background(), o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

func createNamespace(t *testing.T, env *envtest.Env, name string) {
	t.Helper()
	mustCreate(t, env, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
}
