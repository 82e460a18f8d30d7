package hostile

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kproxy/kproxy/proxier"
)

// step is one write to the apiserver.
type step struct {
	obj client.Object
	// status writes obj's status (a Service's load-balancer ingress) after it was
	// created by an earlier step.
	status bool
	// rejected says the apiserver must refuse the write: API validation is then
	// the line of defence, and kproxy never sees the object.
	rejected bool
}

func accept(objs ...client.Object) []step {
	out := make([]step, len(objs))
	for i, o := range objs {
		out[i] = step{obj: o}
	}
	return out
}

func reject(objs ...client.Object) []step {
	out := make([]step, len(objs))
	for i, o := range objs {
		out[i] = step{obj: o, rejected: true}
	}
	return out
}

// hostileKind is one kind of bad input and what kproxy must make of it.
type hostileKind struct {
	name  string
	steps []step
	// reported are the objects kproxy must report as invalid, "Kind/name".
	reported []string
	// want are the service ports this kind must leave in the model, with exactly
	// these endpoints (address:port, sorted); a port listed with no endpoints must
	// be present and empty.
	want map[proxier.ServicePortName][]netip.AddrPort
}

// The counts the oversized-slice kinds use.
const (
	bigSlices     = 10
	sliceCap      = 1000 // the apiserver's maximum endpoints per EndpointSlice
	bigEndpoints  = bigSlices * sliceCap
	absurdPorts   = 100
	builderNPMax  = 31999
	longSliceName = 253
)

// hostileKinds builds the twenty-odd kinds. apiserverIP is the apiserver's own
// address.
func hostileKinds(apiserverIP string) []hostileKind {
	var kinds []hostileKind
	add := func(k hostileKind) { kinds = append(kinds, k) }

	big := hostileKind{name: "10,000 endpoints for one Service, in slices at the 1,000 cap",
		steps: accept(service("big", 80)), want: map[proxier.ServicePortName][]netip.AddrPort{}}
	var all []string
	for i := range bigSlices {
		addrs := bigAddrs(i*sliceCap, sliceCap)
		all = append(all, addrs...)
		big.steps = append(big.steps, accept(slice(fmt.Sprintf("big-%d", i), "big", addrs...))...)
	}
	big.want[port0("big")] = sortedAddrPorts(all...)
	add(big)

	add(hostileKind{name: "one slice over the 1,000-endpoint cap",
		steps: reject(slice("over-cap", "big", bigAddrs(20000, sliceCap+1)...))})

	add(hostileKind{name: "IPv6 endpoint in an IPv4 slice", steps: reject(slice("v6-in-v4", "web", "fd00::5"))})

	// The apiserver (v1.36) does not range-check EndpointSlice port numbers.
	zero, huge := slice("port-zero", "web", "10.244.9.1"), slice("port-huge", "web", "10.244.9.2")
	zero.Ports[0].Port, huge.Ports[0].Port = ptr.To[int32](0), ptr.To[int32](70000)
	add(hostileKind{name: "slice ports zero and out of range", steps: accept(zero, huge),
		reported: []string{"EndpointSlice/port-zero", "EndpointSlice/port-huge"}})

	// The API allows a slice port without a number; kproxy cannot program it.
	noPort := slice("no-port", "web", "10.244.9.3")
	noPort.Ports[0].Port = nil
	add(hostileKind{name: "slice port without a number", steps: accept(noPort), reported: []string{"EndpointSlice/no-port"}})

	longSvc := strings.Repeat("l", 63)
	dotted := service("dotted.name", 80)
	longSlice := slice(strings.Repeat("s.", longSliceName/2)+"s", longSvc, "10.244.3.1")
	add(hostileKind{name: "odd names: 63-character Service, 253-character dotted slice; dots in a Service name",
		steps: append(accept(service(longSvc, 80), longSlice), reject(dotted)...),
		want:  map[proxier.ServicePortName][]netip.AddrPort{port0(longSvc): addrPorts("10.244.3.1")}})

	add(hostileKind{name: "duplicate slices listing the same endpoints",
		steps: accept(service("dup", 80), slice("dup-a", "dup", "10.244.4.1", "10.244.4.2"), slice("dup-b", "dup", "10.244.4.2", "10.244.4.1")),
		want:  map[proxier.ServicePortName][]netip.AddrPort{port0("dup"): addrPorts("10.244.4.1", "10.244.4.2")}})

	// Not an error: the Service may simply not exist yet (see the test's late Service).
	add(hostileKind{name: "slice of a Service that does not exist", steps: accept(slice("orphan", "ghost", "10.244.5.1"))})

	noLabel := slice("no-label", "", "10.244.9.4")
	noLabel.Labels = nil
	add(hostileKind{name: "slice without the service-name label", steps: accept(noLabel), reported: []string{"EndpointSlice/no-label"}})

	// Neither the API nor upstream kube-proxy forbids an endpoint at a cluster IP
	// (here the kubernetes Service's); kproxy programs it like upstream does. The
	// apiserver's own address is loopback under envtest, which the API refuses.
	add(hostileKind{name: "endpoints at the kubernetes Service's cluster IP and at the apiserver's address",
		steps: append(accept(service("alias", 443), slice("alias-1", "alias", "10.96.0.1")),
			reject(slice("alias-apiserver", "alias", apiserverIP))...),
		want: map[proxier.ServicePortName][]netip.AddrPort{port0("alias"): addrPorts("10.96.0.1")}})

	v6LinkLocal := slice("link-local-v6", "web", "fe80::1")
	v6LinkLocal.AddressType = discovery.AddressTypeIPv6
	add(hostileKind{name: "loopback, link-local and multicast endpoint addresses",
		steps: append(reject(slice("loopback", "web", "127.0.0.2"), slice("link-local", "web", "169.254.1.1"), v6LinkLocal,
			slice("ll-multicast", "web", "224.0.0.1")), accept(slice("multicast", "web", "239.1.1.1"))...),
		reported: []string{"EndpointSlice/multicast"}})

	wrongName := slice("wrong-port-name", "portname", "10.244.6.1")
	wrongName.Ports[0].Name = ptr.To("nope")
	add(hostileKind{name: "endpoint port name matching no Service port",
		steps: accept(service("portname", 80), wrongName),
		want:  map[proxier.ServicePortName][]netip.AddrPort{port0("portname"): nil}})

	udp := slice("proto-udp", "proto", "10.244.7.1")
	udp.Ports[0].Protocol = ptr.To(v1.ProtocolUDP)
	icmp := service("icmp", 80)
	icmp.Spec.Ports[0].Protocol = "ICMP"
	add(hostileKind{name: "conflicting protocols: a UDP slice port for a TCP Service port; an ICMP Service",
		steps: append(accept(service("proto", 80), udp), reject(icmp)...),
		want:  map[proxier.ServicePortName][]netip.AddrPort{port0("proto"): nil}})

	lb := service("lb-bad", 80)
	lb.Spec.Type, lb.Spec.Ports[0].NodePort = v1.ServiceTypeLoadBalancer, 30100
	lbStatus := lb.DeepCopy()
	lbStatus.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "300.1.1.1"}}
	add(hostileKind{name: "load-balancer ingress with an invalid IP",
		steps: append(accept(lb, slice("lb-bad-1", "lb-bad", "10.244.8.1")), step{obj: lbStatus, status: true, rejected: true}),
		want:  map[proxier.ServicePortName][]netip.AddrPort{port0("lb-bad"): addrPorts("10.244.8.1")}})

	var affinity []client.Object
	for _, t := range []int32{0, 86401} {
		svc := service(fmt.Sprintf("affinity-%d", t), 80)
		svc.Spec.SessionAffinity = v1.ServiceAffinityClientIP
		svc.Spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: ptr.To(t)}}
		affinity = append(affinity, svc)
	}
	add(hostileKind{name: "session-affinity timeouts out of range", steps: reject(affinity...)})

	ext := service("ext-node", 80)
	ext.Spec.ExternalIPs = []string{nodeIP}
	add(hostileKind{name: "externalIP that is the node's own IP",
		steps: accept(ext, slice("ext-node-1", "ext-node", "10.244.8.2")),
		want:  map[proxier.ServicePortName][]netip.AddrPort{port0("ext-node"): addrPorts("10.244.8.2")}})

	// The apiserver's range is 30000-32767; kproxy is told 30000-31999.
	np := service("np-range", 80)
	np.Spec.Type, np.Spec.Ports[0].NodePort = v1.ServiceTypeNodePort, 32500
	add(hostileKind{name: "NodePort outside the node-port range kproxy was given",
		steps: accept(np, slice("np-range-1", "np-range", "10.244.8.3")), reported: []string{"Service/np-range"}})

	fqdn := slice("fqdn", "web", "x")
	fqdn.AddressType, fqdn.Endpoints[0].Addresses = discovery.AddressTypeFQDN, []string{"db.example.com"}
	add(hostileKind{name: "FQDN slice (ignored silently, as kube-proxy does)", steps: accept(fqdn)})

	// A valid IPv6 slice of an IPv4-only Service (left behind, say, when a Service
	// goes from dual-stack to single-stack) must not lend it endpoints.
	v6 := slice("fam-v6", "fam", "fd00:244::7")
	v6.AddressType = discovery.AddressTypeIPv6
	v4inv6 := slice("v4-in-v6", "fam", "10.244.8.4")
	v4inv6.AddressType = discovery.AddressTypeIPv6
	add(hostileKind{name: "addressType mismatch: an IPv6 slice of an IPv4 Service; IPv4 addresses in an IPv6 slice",
		steps: append(accept(service("fam", 80), v6), reject(v4inv6)...),
		want:  map[proxier.ServicePortName][]netip.AddrPort{port0("fam"): nil}})

	// The apiserver (v1.36) caps neither a Service's nor a slice's ports at 100:
	// a 100-port Service gets its endpoints from a 100-port and a 150-port slice
	// (whose extra ports match nothing).
	many := service("many", 0)
	many.Spec.Ports = nil
	manySlice := slice("many-1", "many", "10.244.8.5")
	manySlice.Ports = nil
	moreSlice := slice("many-more", "many", "10.244.8.6")
	moreSlice.Ports = nil
	wantMany := map[proxier.ServicePortName][]netip.AddrPort{}
	for i := range absurdPorts + absurdPorts/2 {
		name := fmt.Sprintf("p%d", i)
		moreSlice.Ports = append(moreSlice.Ports, discovery.EndpointPort{Name: ptr.To(name), Port: ptr.To(int32(9000 + i))})
		if i >= absurdPorts {
			continue
		}
		many.Spec.Ports = append(many.Spec.Ports, v1.ServicePort{Name: name, Port: int32(1000 + i), Protocol: v1.ProtocolTCP})
		manySlice.Ports = append(manySlice.Ports, discovery.EndpointPort{Name: ptr.To(name), Port: ptr.To(int32(9000 + i))})
		wantMany[portN("many", i)] = []netip.AddrPort{
			netip.AddrPortFrom(netip.MustParseAddr("10.244.8.5"), uint16(9000+i)),
			netip.AddrPortFrom(netip.MustParseAddr("10.244.8.6"), uint16(9000+i)),
		}
	}
	add(hostileKind{name: "an absurd number of ports: 100 in a Service, 100 and 150 in its slices",
		steps: accept(many, manySlice, moreSlice), want: wantMany})

	hc := service("hc-range", 80)
	hc.Spec.Type, hc.Spec.Ports[0].NodePort = v1.ServiceTypeLoadBalancer, 30101
	hc.Spec.ExternalTrafficPolicy, hc.Spec.HealthCheckNodePort = v1.ServiceExternalTrafficPolicyLocal, 32600
	add(hostileKind{name: "health-check node port outside the node-port range kproxy was given",
		steps: accept(hc), reported: []string{"Service/hc-range"}})

	dupPort := service("dup-port", 80, 80)
	add(hostileKind{name: "a Service listing one port twice", steps: reject(dupPort)})

	return kinds
}

func sortedAddrPorts(addrs ...string) []netip.AddrPort {
	out := addrPorts(addrs...)
	slices.SortFunc(out, netip.AddrPort.Compare)
	return out
}
