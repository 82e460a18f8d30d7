package fuzz

import (
	"fmt"
	"strings"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kproxy/kproxy/proxier"
)

// The node the model is built for, and the other node endpoints may run on.
const (
	thisNode  = "node-a"
	otherNode = "node-b"
)

// nodePortRange is what the Builder accepts; scenarios also generate ports outside it.
var nodePortRange = proxier.PortRange{Min: 30000, Max: 32767}

// The pools scenario choices index. Each mixes ordinary values with the odd and
// invalid ones the model must reject or survive.
var (
	nodeAddrChoices = [][]string{
		{"192.168.0.10"}, {"fd00:192::10"}, {"192.168.0.10", "fd00:192::10"},
		{"fd00:192::10", "192.168.0.10"}, {}, {"192.168.0.10", "192.168.0.11", "fd00:192::10"},
	}
	zoneChoices      = []string{"", "zone-a", "zone-b"}
	namespaceChoices = []string{"default", "kube-system", "ns.with.dots", strings.Repeat("n", 63)}
	nameChoices      = []string{"web", "dns", "a", strings.Repeat("x", 63), "odd.name.with.dots", "web-1", "UPPER_case", "web"}
	svcTypeChoices   = []string{"ClusterIP", "NodePort", "LoadBalancer", "ExternalName", "Headless", "Pending"}
	// familyChoices list the families of a service's cluster IPs, primary first.
	familyChoices   = [][]proxier.IPFamily{{proxier.IPv4}, {proxier.IPv6}, {proxier.IPv4, proxier.IPv6}, {proxier.IPv6, proxier.IPv4}}
	portNameChoices = []string{"", "http", "dns", "p-3"}
	protoChoices    = []v1.Protocol{v1.ProtocolTCP, v1.ProtocolUDP, v1.ProtocolSCTP, ""}
	portChoices     = []int32{80, 53, 443, 8080, 1, 65535, 0, 80}
	extIPChoices    = []string{"192.168.99.1", "192.168.99.2", "2001:db8:99::1", "192.168.0.10", "not-an-ip", "127.0.0.1", "10.96.0.10", "fd00:192::10"}
	ingressChoices  = []string{"198.51.100.1", "198.51.100.2", "2001:db8:51::1", "", "300.1.1.1", "192.168.99.1"}
	rangeChoices    = []string{"203.0.113.0/24", "198.51.100.0/24", "2001:db8:113::/64", "0.0.0.0/0", " 10.0.0.0/8 ", "bogus"}
	// affinityChoices are timeouts: -1 no affinity, 0 ClientIP with the default,
	// others explicit (0 and 86401 seconds are invalid).
	affinityChoices   = []int32{-1, 0, 60, -2, 86401}
	sliceLabelChoices = []string{"normal", "no-service-label", "headless", "other-proxy", "managed-by"}
	targetPortChoices = []int32{8080, 53, 9999, 1, 65535, 0, 70000, 80}
	// addrWhereChoices say where an endpoint's address comes from; see endpointAddr.
	addrWhereChoices = []string{"local-pod", "remote-pod", "remote-pod", "other-family", "loopback", "link-local", "multicast", "garbage", "cluster-ip", "node-ip", "mapped"}
	hintChoices      = []string{"none", "zone-a", "zone-b", "node-a", "node-b", "zone-a+node-a"}
)

// objects is a scenario as API objects, in the order they are fed to the model.
type objects struct {
	node     *v1.Node
	services []*v1.Service
	slices   []*discovery.EndpointSlice
}

func buildObjects(s *scenario) *objects {
	out := &objects{node: buildNode(&s.Node)}
	for i := range s.Services {
		out.services = append(out.services, buildService(s, i))
	}
	for i := range s.Slices {
		out.slices = append(out.slices, buildSlice(s, i))
	}
	return out
}

func buildNode(n *nodeSpec) *v1.Node {
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: thisNode}}
	if z := zoneChoices[n.Zone]; z != "" {
		node.Labels = map[string]string{proxier.LabelTopologyZone: z}
	}
	for _, a := range nodeAddrChoices[n.Addrs] {
		node.Status.Addresses = append(node.Status.Addresses, v1.NodeAddress{Type: v1.NodeInternalIP, Address: a})
	}
	if n.CIDRs&1 != 0 {
		node.Spec.PodCIDRs = append(node.Spec.PodCIDRs, "10.244.1.0/24")
	}
	if n.CIDRs&2 != 0 {
		node.Spec.PodCIDRs = append(node.Spec.PodCIDRs, "fd00:244:1::/64")
	}
	return node
}

// clusterIPs returns service i's cluster IPs: unique per service unless it reuses
// another's.
func clusterIPs(s *scenario, i int) []string {
	sv := &s.Services[i]
	host := i
	if sv.IPFrom > 0 {
		host = (sv.IPFrom - 1) % len(s.Services)
	}
	var out []string
	for _, f := range familyChoices[sv.Families] {
		if f == proxier.IPv4 {
			out = append(out, fmt.Sprintf("10.96.0.%d", 10+host))
		} else {
			out = append(out, fmt.Sprintf("fd00:96::%x", 0x10+host))
		}
	}
	return out
}

func buildService(s *scenario, i int) *v1.Service {
	sv := &s.Services[i]
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{
		Namespace: namespaceChoices[sv.NS], Name: nameChoices[sv.Name], ResourceVersion: fmt.Sprint(i + 1)}}
	if sv.ProxyNameLabel == 1 {
		svc.Labels = map[string]string{proxier.LabelServiceProxyName: "someone-else"}
	}
	spec := &svc.Spec
	ips := clusterIPs(s, i)
	if sv.BadClusterIP == 1 {
		ips[0] = "10.96.0.999"
	}
	spec.ClusterIP, spec.ClusterIPs = ips[0], ips
	switch t := svcTypeChoices[sv.Type]; t {
	case "Headless":
		spec.Type, spec.ClusterIP, spec.ClusterIPs = v1.ServiceTypeClusterIP, v1.ClusterIPNone, []string{v1.ClusterIPNone}
	case "Pending":
		spec.Type, spec.ClusterIP, spec.ClusterIPs = v1.ServiceTypeClusterIP, "", nil
	case "ExternalName":
		spec.Type, spec.ExternalName = v1.ServiceTypeExternalName, "example.com"
	default:
		spec.Type = v1.ServiceType(t)
	}
	withNodePorts := spec.Type == v1.ServiceTypeNodePort || spec.Type == v1.ServiceTypeLoadBalancer
	for j, p := range sv.Ports {
		sp := v1.ServicePort{Name: portNameChoices[p.Name], Protocol: protoChoices[p.Proto], Port: portChoices[p.Port]}
		if withNodePorts {
			sp.NodePort = int32(30000 + 10*i + j)
			if p.SharedNodePort == 1 {
				sp.NodePort = 30000
			}
			if sv.NodePortInRange == 1 {
				sp.NodePort = 20000 + int32(j)
			}
		}
		spec.Ports = append(spec.Ports, sp)
	}
	if sv.DuplicatePort == 1 && len(spec.Ports) > 0 {
		spec.Ports = append(spec.Ports, spec.Ports[0])
	}
	for _, e := range sv.ExternalIPs {
		spec.ExternalIPs = append(spec.ExternalIPs, extIPChoices[e])
	}
	for _, r := range sv.Ranges {
		spec.LoadBalancerSourceRanges = append(spec.LoadBalancerSourceRanges, rangeChoices[r])
	}
	for _, ing := range sv.Ingress {
		in := v1.LoadBalancerIngress{IP: ingressChoices[ing.IP]}
		if in.IP == "" {
			in.Hostname = "lb.example.com"
		}
		switch ing.Mode {
		case 1:
			in.IPMode = ptr.To(v1.LoadBalancerIPModeVIP)
		case 2:
			in.IPMode = ptr.To(v1.LoadBalancerIPModeProxy)
		case 3:
			in.IPMode = ptr.To(v1.LoadBalancerIPMode("Bogus"))
		}
		svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, in)
	}
	if t := affinityChoices[sv.Affinity]; t != -1 {
		spec.SessionAffinity = v1.ServiceAffinityClientIP
		switch {
		case t == -2:
			spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](0)}}
		case t > 0:
			spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: ptr.To(t)}}
		}
	}
	if sv.ETPLocal == 1 {
		spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
	}
	switch sv.ITP {
	case 1:
		spec.InternalTrafficPolicy = ptr.To(v1.ServiceInternalTrafficPolicyCluster)
	case 2:
		spec.InternalTrafficPolicy = ptr.To(v1.ServiceInternalTrafficPolicyLocal)
	}
	switch sv.HealthCheck {
	case 1:
		spec.HealthCheckNodePort = int32(32000 + i)
	case 2:
		spec.HealthCheckNodePort = 1000
	}
	return svc
}

func buildSlice(s *scenario, i int) *discovery.EndpointSlice {
	sl := &s.Slices[i]
	ns, svcName := "default", "ghost"
	if sl.Service < len(s.Services) {
		sv := &s.Services[sl.Service]
		ns, svcName = namespaceChoices[sv.NS], nameChoices[sv.Name]
	}
	out := &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%.50s-%d", svcName, i),
			ResourceVersion: fmt.Sprint(100 + i), Labels: map[string]string{proxier.LabelServiceName: svcName}},
		AddressType: []discovery.AddressType{discovery.AddressTypeIPv4, discovery.AddressTypeIPv6, discovery.AddressTypeFQDN}[sl.AddressType],
	}
	switch sliceLabelChoices[sl.Labels] {
	case "no-service-label":
		delete(out.Labels, proxier.LabelServiceName)
	case "headless":
		out.Labels[proxier.LabelHeadless] = "true"
	case "other-proxy":
		out.Labels[proxier.LabelServiceProxyName] = "someone-else"
	case "managed-by":
		out.Labels[discovery.LabelManagedBy] = "endpointslice-controller.k8s.io"
	}
	for _, p := range sl.Ports {
		ep := discovery.EndpointPort{Name: ptr.To(portNameChoices[p.Name]), Port: ptr.To(targetPortChoices[p.Port])}
		if proto := protoChoices[p.Proto]; proto != "" {
			ep.Protocol = ptr.To(proto)
		}
		if p.NilPort == 1 {
			ep.Port = nil
		}
		out.Ports = append(out.Ports, ep)
	}
	v6 := sl.AddressType == 1
	for _, e := range sl.Endpoints {
		ep := discovery.Endpoint{Addresses: []string{endpointAddr(e.Where, e.Host, v6)}}
		if e.ExtraAddr == 1 {
			ep.Addresses = append(ep.Addresses, "garbage-second-address")
		}
		ep.Conditions = discovery.EndpointConditions{Ready: tristate(e.Ready), Serving: tristate(e.Serving), Terminating: tristate(e.Term)}
		switch e.Node {
		case 1:
			ep.NodeName = ptr.To(thisNode)
		case 2:
			ep.NodeName = ptr.To(otherNode)
		}
		if z := zoneChoices[e.Zone]; z != "" {
			ep.Zone = ptr.To(z)
		}
		switch h := hintChoices[e.Hints]; h {
		case "none":
		case "zone-a+node-a":
			ep.Hints = &discovery.EndpointHints{ForZones: []discovery.ForZone{{Name: "zone-a"}}, ForNodes: []discovery.ForNode{{Name: thisNode}}}
		default:
			kind, name, _ := strings.Cut(h, "-")
			if kind == "zone" {
				ep.Hints = &discovery.EndpointHints{ForZones: []discovery.ForZone{{Name: h}}}
			} else {
				ep.Hints = &discovery.EndpointHints{ForNodes: []discovery.ForNode{{Name: "node-" + name}}}
			}
		}
		out.Endpoints = append(out.Endpoints, ep)
	}
	return out
}

// endpointAddr is an endpoint's first address; where the address comes from decides
// whether the model must accept it.
func endpointAddr(where, host int, v6 bool) string {
	h := host + 2
	pick := func(a, b string) string {
		if v6 {
			return b
		}
		return a
	}
	switch addrWhereChoices[where] {
	case "local-pod":
		return pick(fmt.Sprintf("10.244.1.%d", h), fmt.Sprintf("fd00:244:1::%x", h))
	case "remote-pod":
		return pick(fmt.Sprintf("10.244.2.%d", h), fmt.Sprintf("fd00:244:2::%x", h))
	case "other-family":
		return pick(fmt.Sprintf("fd00:244:2::%x", h), fmt.Sprintf("10.244.2.%d", h))
	case "loopback":
		return pick("127.0.0.1", "::1")
	case "link-local":
		return pick("169.254.169.254", "fe80::1")
	case "multicast":
		return pick("224.0.0.1", "ff02::1")
	case "garbage":
		return "10.244.2.x"
	case "cluster-ip":
		return pick("10.96.0.10", "fd00:96::10")
	case "node-ip":
		return pick("192.168.0.10", "fd00:192::10")
	case "mapped":
		return fmt.Sprintf("::ffff:10.244.2.%d", h)
	}
	panic("unknown address choice")
}

func tristate(v int) *bool {
	switch v {
	case 1:
		return ptr.To(true)
	case 2:
		return ptr.To(false)
	}
	return nil
}
