package stress

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// writer owns a disjoint subset of the service pool and applies random changes to it.
// Owning its objects exclusively lets it keep the last version the apiserver returned
// and write on top of it without reading first: no conflicts, one request per change.
type writer struct {
	c         client.Client
	rng       *rand.Rand
	namespace string
	nodeName  string
	svcs      map[int]*v1.Service
	slices    map[string]*discovery.EndpointSlice
	counts    *opCounts
}

// opCounts tallies the writes by kind, across writers.
type opCounts struct {
	svcCreate, svcUpdate, svcStatus, svcDelete atomic.Int64
	sliceCreate, sliceUpdate, sliceDelete      atomic.Int64
}

func (o *opCounts) String() string {
	return fmt.Sprintf("services: %d created, %d updated, %d status, %d deleted; slices: %d created, %d updated, %d deleted",
		o.svcCreate.Load(), o.svcUpdate.Load(), o.svcStatus.Load(), o.svcDelete.Load(),
		o.sliceCreate.Load(), o.sliceUpdate.Load(), o.sliceDelete.Load())
}

func svcName(i int) string { return fmt.Sprintf("svc-%03d", i) }

// step applies one random change to service index i (or one of its slices): exactly
// one write to the apiserver.
func (w *writer) step(ctx context.Context, i int) error {
	svc := w.svcs[i]
	if svc == nil {
		if w.rng.IntN(5) == 0 {
			// Slices may exist before (or after) their Service.
			return w.writeSlice(ctx, i)
		}
		return w.createService(ctx, i)
	}
	switch r := w.rng.IntN(100); {
	case r < 40:
		return w.writeSlice(ctx, i)
	case r < 48:
		return w.deleteSlice(ctx, i)
	case r < 85:
		return w.updateService(ctx, i)
	case r < 94 && svc.Spec.Type == v1.ServiceTypeLoadBalancer:
		return w.updateStatus(ctx, i)
	case r < 94:
		return w.updateService(ctx, i)
	default:
		return w.deleteService(ctx, i)
	}
}

func (w *writer) createService(ctx context.Context, i int) error {
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: w.namespace, Name: svcName(i)}}
	w.randomSpec(svc)
	if err := w.c.Create(ctx, svc); err != nil {
		return fmt.Errorf("create service %s: %w", svc.Name, err)
	}
	w.counts.svcCreate.Add(1)
	w.svcs[i] = svc
	return nil
}

func (w *writer) updateService(ctx context.Context, i int) error {
	svc := w.svcs[i].DeepCopy()
	w.randomSpec(svc)
	if err := w.c.Update(ctx, svc); err != nil {
		return fmt.Errorf("update service %s: %w", svc.Name, err)
	}
	w.counts.svcUpdate.Add(1)
	w.svcs[i] = svc
	return nil
}

// updateStatus gives a LoadBalancer Service a new set of ingress IPs (possibly none),
// as a cloud controller would.
func (w *writer) updateStatus(ctx context.Context, i int) error {
	svc := w.svcs[i].DeepCopy()
	svc.Status.LoadBalancer.Ingress = nil
	for n := w.rng.IntN(3); n > 0; n-- {
		ip := fmt.Sprintf("192.0.2.%d", 1+w.rng.IntN(250))
		if !slices.ContainsFunc(svc.Status.LoadBalancer.Ingress, func(g v1.LoadBalancerIngress) bool { return g.IP == ip }) {
			svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, v1.LoadBalancerIngress{IP: ip})
		}
	}
	if err := w.c.Status().Update(ctx, svc); err != nil {
		return fmt.Errorf("update status of service %s: %w", svc.Name, err)
	}
	w.counts.svcStatus.Add(1)
	w.svcs[i] = svc
	return nil
}

func (w *writer) deleteService(ctx context.Context, i int) error {
	if err := w.c.Delete(ctx, w.svcs[i]); err != nil {
		return fmt.Errorf("delete service %s: %w", svcName(i), err)
	}
	w.counts.svcDelete.Add(1)
	delete(w.svcs, i)
	return nil
}

// randomSpec rewrites the parts of a Service's spec a user changes: type, ports,
// traffic policies, affinity, external IPs and source ranges. Fields the apiserver
// allocated are kept where the new type still allows them and cleared where it does
// not, so every update is valid.
func (w *writer) randomSpec(svc *v1.Service) {
	s := &svc.Spec
	s.Type = []v1.ServiceType{v1.ServiceTypeClusterIP, v1.ServiceTypeNodePort, v1.ServiceTypeLoadBalancer}[w.rng.IntN(3)]
	external := s.Type != v1.ServiceTypeClusterIP
	oldPorts := s.Ports
	s.Ports = nil
	for p := range 1 + w.rng.IntN(2) {
		proto := v1.ProtocolTCP
		if w.rng.IntN(4) == 0 {
			proto = v1.ProtocolUDP
		}
		sp := v1.ServicePort{
			Name: fmt.Sprintf("p%d", p), Protocol: proto,
			Port:       int32(80 + 10*p + w.rng.IntN(2)),
			TargetPort: intstr.FromInt32(int32(8080 + p)),
		}
		// Keeping the allocated node port when the port survives is what kubectl
		// apply does; dropping it makes the apiserver allocate a new one.
		if external && p < len(oldPorts) && w.rng.IntN(2) == 0 {
			sp.NodePort = oldPorts[p].NodePort
		}
		s.Ports = append(s.Ports, sp)
	}
	s.ExternalTrafficPolicy, s.HealthCheckNodePort = "", 0
	if external {
		s.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyCluster
		if w.rng.IntN(2) == 0 {
			s.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
		}
	}
	s.InternalTrafficPolicy = ptr.To(v1.ServiceInternalTrafficPolicyCluster)
	if w.rng.IntN(4) == 0 {
		s.InternalTrafficPolicy = ptr.To(v1.ServiceInternalTrafficPolicyLocal)
	}
	s.SessionAffinity, s.SessionAffinityConfig = v1.ServiceAffinityNone, nil
	if w.rng.IntN(5) == 0 {
		s.SessionAffinity = v1.ServiceAffinityClientIP
	}
	s.ExternalIPs = nil
	if w.rng.IntN(4) == 0 {
		s.ExternalIPs = []string{fmt.Sprintf("203.0.113.%d", 1+w.rng.IntN(250))}
	}
	s.LoadBalancerSourceRanges, s.AllocateLoadBalancerNodePorts = nil, nil
	if s.Type == v1.ServiceTypeLoadBalancer {
		s.AllocateLoadBalancerNodePorts = ptr.To(true)
		if w.rng.IntN(3) == 0 {
			s.LoadBalancerSourceRanges = []string{fmt.Sprintf("198.51.100.%d/32", w.rng.IntN(256)), "10.0.0.0/8"}
		}
	} else {
		svc.Status.LoadBalancer = v1.LoadBalancerStatus{}
	}
}

func sliceName(i int, which byte) string { return fmt.Sprintf("%s-%c", svcName(i), which) }

// writeSlice creates one of service i's two slices, or mutates it: flips endpoint
// conditions (ready, serving, terminating), scales it up or down, or changes its ports.
func (w *writer) writeSlice(ctx context.Context, i int) error {
	name := sliceName(i, "ab"[w.rng.IntN(2)])
	old := w.slices[name]
	var s *discovery.EndpointSlice
	if old == nil {
		s = &discovery.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: w.namespace, Name: name,
				Labels: map[string]string{discovery.LabelServiceName: svcName(i)}},
			AddressType: discovery.AddressTypeIPv4,
		}
		w.randomPorts(s, i)
		for range 1 + w.rng.IntN(6) {
			w.addEndpoint(s)
		}
	} else {
		s = old.DeepCopy()
		switch r := w.rng.IntN(10); {
		case r < 4 && len(s.Endpoints) > 0:
			w.flip(&s.Endpoints[w.rng.IntN(len(s.Endpoints))])
		case r < 6:
			w.addEndpoint(s)
		case r < 8 && len(s.Endpoints) > 0:
			k := w.rng.IntN(len(s.Endpoints))
			s.Endpoints = slices.Delete(s.Endpoints, k, k+1)
		default:
			w.randomPorts(s, i)
		}
	}
	var err error
	if old == nil {
		err = w.c.Create(ctx, s)
		w.counts.sliceCreate.Add(1)
	} else {
		err = w.c.Update(ctx, s)
		w.counts.sliceUpdate.Add(1)
	}
	if err != nil {
		return fmt.Errorf("write slice %s: %w", name, err)
	}
	w.slices[name] = s
	return nil
}

func (w *writer) deleteSlice(ctx context.Context, i int) error {
	name := sliceName(i, "ab"[w.rng.IntN(2)])
	s := w.slices[name]
	if s == nil {
		return w.writeSlice(ctx, i)
	}
	if err := w.c.Delete(ctx, s); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete slice %s: %w", name, err)
	}
	w.counts.sliceDelete.Add(1)
	delete(w.slices, name)
	return nil
}

// randomPorts gives a slice the ports of its Service as the writer last saw it (or
// made-up ones), and sometimes a protocol that does not match, which must leave that
// service port without endpoints.
func (w *writer) randomPorts(s *discovery.EndpointSlice, i int) {
	s.Ports = nil
	n := 1 + w.rng.IntN(2)
	if svc := w.svcs[i]; svc != nil {
		n = len(svc.Spec.Ports)
	}
	for p := range n {
		proto := v1.ProtocolTCP
		if svc := w.svcs[i]; svc != nil {
			proto = svc.Spec.Ports[p].Protocol
		}
		if w.rng.IntN(8) == 0 {
			proto = v1.ProtocolUDP
		}
		s.Ports = append(s.Ports, discovery.EndpointPort{
			Name: ptr.To(fmt.Sprintf("p%d", p)), Port: ptr.To(int32(8080 + p)), Protocol: ptr.To(proto)})
	}
}

// addEndpoint adds a local or remote endpoint with an address not yet in the slice.
func (w *writer) addEndpoint(s *discovery.EndpointSlice) {
	for range 10 {
		node, subnet := w.nodeName, 1
		if w.rng.IntN(2) == 0 {
			node, subnet = "remote-node", 2
		}
		addr := fmt.Sprintf("10.244.%d.%d", subnet, 2+w.rng.IntN(40))
		if slices.ContainsFunc(s.Endpoints, func(e discovery.Endpoint) bool { return e.Addresses[0] == addr }) {
			continue
		}
		e := discovery.Endpoint{Addresses: []string{addr}, NodeName: ptr.To(node)}
		w.flip(&e)
		s.Endpoints = append(s.Endpoints, e)
		return
	}
}

// flip sets random endpoint conditions: mostly ready, sometimes terminating (serving
// or not), sometimes not ready, sometimes without any condition (which means ready).
func (w *writer) flip(e *discovery.Endpoint) {
	switch w.rng.IntN(6) {
	case 0, 1, 2:
		e.Conditions = discovery.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)}
	case 3:
		e.Conditions = discovery.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}
	case 4:
		e.Conditions = discovery.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(false), Terminating: ptr.To(w.rng.IntN(2) == 0)}
	default:
		e.Conditions = discovery.EndpointConditions{}
	}
}
