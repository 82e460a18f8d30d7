package fuzz

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"

	"github.com/kproxy/kproxy/proxier"
)

// built is the model of one scenario and what the Builder said about each object.
type built struct {
	state *proxier.State
	// svcErr and sliceErr hold the error of each object's upsert, by position in
	// objects.
	svcErr   []error
	sliceErr []error
}

// buildModel feeds objs to a fresh Builder (slices before services when slicesFirst)
// and takes one snapshot.
func buildModel(objs *objects, slicesFirst bool, reverseSlices bool) (*built, error) {
	b := proxier.NewBuilder(proxier.BuilderOptions{NodeName: thisNode, NodePortRange: nodePortRange})
	out := &built{svcErr: make([]error, len(objs.services)), sliceErr: make([]error, len(objs.slices))}
	if err := b.SetNode(objs.node); err != nil {
		return nil, fmt.Errorf("the generated Node is valid but was rejected: %w", err)
	}
	feedServices := func() {
		for i, svc := range objs.services {
			out.svcErr[i] = b.UpsertService(svc)
		}
	}
	feedSlices := func() {
		for k := range objs.slices {
			i := k
			if reverseSlices {
				i = len(objs.slices) - 1 - k
			}
			out.sliceErr[i] = b.UpsertEndpointSlice(objs.slices[i])
		}
	}
	if slicesFirst {
		feedSlices()
		feedServices()
	} else {
		feedServices()
		feedSlices()
	}
	b.MarkInitialized()
	out.state, _ = b.Snapshot()
	return out, nil
}

// serviceIgnored says whether kube-proxy skips a Service without complaint.
func serviceIgnored(svc *v1.Service) bool {
	return svc.Labels[proxier.LabelServiceProxyName] != "" || svc.Spec.Type == v1.ServiceTypeExternalName ||
		svc.Spec.ClusterIP == v1.ClusterIPNone || svc.Spec.ClusterIP == ""
}

// sliceIgnored says whether kube-proxy skips an EndpointSlice without complaint.
func sliceIgnored(s *discovery.EndpointSlice) bool {
	return s.Labels[proxier.LabelServiceProxyName] != "" || s.Labels[proxier.LabelHeadless] != "" ||
		s.AddressType == discovery.AddressTypeFQDN
}

// checkModel verifies the model against the objects it was built from. The expected
// endpoints are derived here from the accepted slices independently of the
// Builder's merge, so a merge that drops, invents or duplicates an endpoint fails.
func checkModel(objs *objects, m *built) error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	st := m.state
	if st.Node.Name != thisNode {
		fail("state node is %q", st.Node.Name)
	}

	for i, err := range m.svcErr {
		if err != nil && !isInvalidObject(err, "Service") {
			fail("Service #%d: error is not a proxier.InvalidObjectError of kind Service: %v", i, err)
		}
	}
	for i, err := range m.sliceErr {
		if err != nil && !isInvalidObject(err, "EndpointSlice") {
			fail("EndpointSlice #%d: error is not a proxier.InvalidObjectError of kind EndpointSlice: %v", i, err)
		}
	}

	// The last upsert of each Service name decides what the model holds for it.
	wantPorts := map[proxier.ServicePortName]bool{}
	lastSvc := map[proxier.ServiceName]int{}
	for i, svc := range objs.services {
		lastSvc[proxier.ServiceName{Namespace: svc.Namespace, Name: svc.Name}] = i
	}
	for name, i := range lastSvc {
		svc := objs.services[i]
		if m.svcErr[i] != nil || serviceIgnored(svc) {
			continue
		}
		for _, p := range svc.Spec.Ports {
			wantPorts[proxier.ServicePortName{ServiceName: name, Port: p.Name, Protocol: protocolOf(&p.Protocol)}] = true
		}
	}
	for _, sp := range st.ServicePorts() {
		if !wantPorts[sp.Name] {
			fail("%s is in the model but no accepted Service has that port", sp.Name)
		}
		delete(wantPorts, sp.Name)
		if err := checkServicePortOn(sp, thisNode); err != nil {
			errs = append(errs, err)
		}
		want := expectedEndpoints(objs, m, sp)
		got := make([]netip.AddrPort, 0, len(sp.Endpoints))
		for _, ep := range sp.Endpoints {
			got = append(got, ep.AddrPort())
		}
		if !slices.Equal(got, want) {
			fail("%s: endpoints %v, the accepted slices list %v", sp.Name, got, want)
		}
	}
	for name := range wantPorts {
		fail("%s was accepted but is missing from the model", name)
	}
	return errors.Join(errs...)
}

func isInvalidObject(err error, kind string) bool {
	var inv *proxier.InvalidObjectError
	return errors.As(err, &inv) && inv.Kind == kind && len(inv.Errs) > 0
}

func protocolOf(p *v1.Protocol) proxier.Protocol {
	if p == nil {
		return proxier.ProtocolTCP
	}
	switch *p {
	case v1.ProtocolUDP:
		return proxier.ProtocolUDP
	case v1.ProtocolSCTP:
		return proxier.ProtocolSCTP
	}
	return proxier.ProtocolTCP
}

// checkServicePortOn checks what backends rely on without re-checking: addresses and
// ports in range, one cluster IP per family, endpoints sorted, unique and labelled
// local exactly when they run on node.
func checkServicePortOn(sp *proxier.ServicePort, node string) error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{sp.Name}, args...)...))
	}
	switch {
	case len(sp.ClusterIPs) == 0 || len(sp.ClusterIPs) > 2:
		fail("%d cluster IPs", len(sp.ClusterIPs))
	case len(sp.ClusterIPs) == 2 && proxier.FamilyOf(sp.ClusterIPs[0]) == proxier.FamilyOf(sp.ClusterIPs[1]):
		fail("two cluster IPs of one family: %v", sp.ClusterIPs)
	}
	for _, a := range append(append([]netip.Addr{}, sp.ClusterIPs...), sp.ExternalIPs...) {
		if !usableUnicast(a) {
			fail("address %v is not usable unicast", a)
		}
	}
	if sp.Port == 0 {
		fail("port 0")
	}
	if sp.NodePort != 0 && !nodePortRange.Contains(int32(sp.NodePort)) {
		fail("node port %d outside %v", sp.NodePort, nodePortRange)
	}
	if sp.AffinityTimeout < 0 || sp.AffinityTimeout > 86400*time.Second {
		fail("affinity timeout %v", sp.AffinityTimeout)
	}
	for i := range sp.Endpoints {
		ep := &sp.Endpoints[i]
		if _, ok := sp.ClusterIP(proxier.FamilyOf(ep.Addr)); !ok {
			fail("endpoint %v is of a family the service has no cluster IP of", ep)
		}
		if !usableUnicast(ep.Addr) || ep.Port == 0 {
			fail("endpoint %v is not a usable unicast address and port", ep)
		}
		if ep.Local != (ep.NodeName == node && node != "") {
			fail("endpoint %v on node %q has Local=%v", ep, ep.NodeName, ep.Local)
		}
		if i > 0 {
			prev := &sp.Endpoints[i-1]
			if c := prev.AddrPort().Compare(ep.AddrPort()); c >= 0 {
				fail("endpoints not sorted and unique: %v then %v", prev, ep)
			}
		}
	}
	return errors.Join(errs...)
}

func usableUnicast(a netip.Addr) bool {
	return a.IsValid() && !a.Is4In6() && a.Zone() == "" && !a.IsLoopback() && !a.IsUnspecified() &&
		!a.IsMulticast() && !a.IsLinkLocalUnicast()
}

// expectedEndpoints lists, sorted, every address:port the accepted slices of sp's
// Service (of a family sp has a cluster IP of) give sp: the first address of each endpoint with the number of every slice
// port of sp's name and protocol.
func expectedEndpoints(objs *objects, m *built, sp *proxier.ServicePort) []netip.AddrPort {
	var out []netip.AddrPort
	for i, s := range objs.slices {
		if m.sliceErr[i] != nil || sliceIgnored(s) || s.Namespace != sp.Name.Namespace ||
			s.Labels[proxier.LabelServiceName] != sp.Name.Name {
			continue
		}
		fam := proxier.IPv4
		if s.AddressType == discovery.AddressTypeIPv6 {
			fam = proxier.IPv6
		}
		if _, ok := sp.ClusterIP(fam); !ok {
			continue
		}
		for _, p := range s.Ports {
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			if name != sp.Name.Port || protocolOf(p.Protocol) != sp.Name.Protocol || p.Port == nil {
				continue
			}
			for _, ep := range s.Endpoints {
				a, err := netip.ParseAddr(ep.Addresses[0])
				if err != nil {
					continue
				}
				ap := netip.AddrPortFrom(a.Unmap(), uint16(*p.Port))
				if !slices.Contains(out, ap) {
					out = append(out, ap)
				}
			}
		}
	}
	slices.SortFunc(out, netip.AddrPort.Compare)
	return out
}

// sameModel reports how two States differ, or "".
func sameModel(a, b *proxier.State) string {
	if a.Len() != b.Len() {
		return fmt.Sprintf("%d service ports vs %d", a.Len(), b.Len())
	}
	for _, sp := range a.ServicePorts() {
		o, ok := b.Lookup(sp.Name)
		if !ok {
			return fmt.Sprintf("%s missing", sp.Name)
		}
		if !sp.Equal(o) {
			return fmt.Sprintf("%s differs:\n%+v\n%+v", sp.Name, *sp, *o)
		}
	}
	return ""
}
