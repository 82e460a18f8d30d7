package hostile

import (
	"fmt"
	"net/netip"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kproxy/kproxy/proxier"
)

const (
	ns       = "hostile"
	nodeName = "node-hostile"
	nodeIP   = "192.0.2.10"
)

// service is a ClusterIP Service with one TCP port per number, named p0, p1, ...
func service(name string, ports ...int32) *v1.Service {
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	svc.Spec.IPFamilies = []v1.IPFamily{v1.IPv4Protocol}
	for i, p := range ports {
		svc.Spec.Ports = append(svc.Spec.Ports, v1.ServicePort{Name: fmt.Sprintf("p%d", i), Port: p, Protocol: v1.ProtocolTCP})
	}
	return svc
}

// slice is an IPv4 EndpointSlice of svcName with port p0 on 8080/TCP and one ready
// endpoint per address.
func slice(name, svcName string, addrs ...string) *discovery.EndpointSlice {
	s := &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{proxier.LabelServiceName: svcName}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: ptr.To("p0"), Port: ptr.To[int32](8080), Protocol: ptr.To(v1.ProtocolTCP)}},
	}
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, discovery.Endpoint{Addresses: []string{a}, NodeName: ptr.To("node-other"),
			Conditions: discovery.EndpointConditions{Ready: ptr.To(true)}})
	}
	return s
}

// bigAddrs returns n distinct pod addresses starting at the index from.
func bigAddrs(from, n int) []string {
	out := make([]string, n)
	for i := range out {
		k := from + i
		out[i] = fmt.Sprintf("10.%d.%d.%d", 100+k/65536, k/256%256, k%256)
	}
	return out
}

func port0(svc string) proxier.ServicePortName {
	return portN(svc, 0)
}

func portN(svc string, i int) proxier.ServicePortName {
	return proxier.ServicePortName{ServiceName: proxier.ServiceName{Namespace: ns, Name: svc},
		Port: fmt.Sprintf("p%d", i), Protocol: proxier.ProtocolTCP}
}

// addrPorts turns addresses into address:8080 values, sorted like the model sorts.
func addrPorts(addrs ...string) []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, netip.AddrPortFrom(netip.MustParseAddr(a), 8080))
	}
	return out
}
