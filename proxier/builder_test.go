package proxier

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// ---- API object constructors ----

const testNS = "ns"

type svcMod func(*v1.Service)

// newService returns a valid single-stack ClusterIP Service in testNS with one TCP port
// "http" 80, modified by mods.
func newService(name string, mods ...svcMod) *v1.Service {
	svc := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: name},
		Spec: v1.ServiceSpec{
			Type:       v1.ServiceTypeClusterIP,
			ClusterIP:  "10.96.0.1",
			ClusterIPs: []string{"10.96.0.1"},
			Ports:      []v1.ServicePort{tcpPort("http", 80)},
		},
	}
	for _, m := range mods {
		m(svc)
	}
	return svc
}

func tcpPort(name string, port int32) v1.ServicePort {
	return v1.ServicePort{Name: name, Port: port, Protocol: v1.ProtocolTCP}
}

func withClusterIPs(ips ...string) svcMod {
	return func(s *v1.Service) {
		s.Spec.ClusterIPs = ips
		s.Spec.ClusterIP = ""
		if len(ips) > 0 {
			s.Spec.ClusterIP = ips[0]
		}
	}
}

func withPorts(ports ...v1.ServicePort) svcMod {
	return func(s *v1.Service) { s.Spec.Ports = ports }
}

func withType(t v1.ServiceType) svcMod { return func(s *v1.Service) { s.Spec.Type = t } }

// withNodePort makes the Service a NodePort one and gives its first port a node port.
func withNodePort(np int32) svcMod {
	return func(s *v1.Service) {
		if s.Spec.Type == v1.ServiceTypeClusterIP {
			s.Spec.Type = v1.ServiceTypeNodePort
		}
		s.Spec.Ports[0].NodePort = np
	}
}

func withExternalIPs(ips ...string) svcMod {
	return func(s *v1.Service) { s.Spec.ExternalIPs = ips }
}

func withIngress(ing ...v1.LoadBalancerIngress) svcMod {
	return func(s *v1.Service) {
		s.Spec.Type = v1.ServiceTypeLoadBalancer
		s.Status.LoadBalancer.Ingress = ing
	}
}

func withSourceRanges(r ...string) svcMod {
	return func(s *v1.Service) { s.Spec.LoadBalancerSourceRanges = r }
}

// withClientIPAffinity turns on ClientIP affinity; a nil timeout leaves the config unset.
func withClientIPAffinity(timeout *int32) svcMod {
	return func(s *v1.Service) {
		s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
		if timeout != nil {
			s.Spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: timeout}}
		}
	}
}

func withExternalTrafficPolicy(p v1.ServiceExternalTrafficPolicy, healthCheckNodePort int32) svcMod {
	return func(s *v1.Service) {
		s.Spec.ExternalTrafficPolicy = p
		s.Spec.HealthCheckNodePort = healthCheckNodePort
	}
}

func withInternalTrafficPolicyLocal(s *v1.Service) {
	s.Spec.InternalTrafficPolicy = ptr.To(v1.ServiceInternalTrafficPolicyLocal)
}

func withSvcLabel(k, v string) svcMod {
	return func(s *v1.Service) {
		if s.Labels == nil {
			s.Labels = map[string]string{}
		}
		s.Labels[k] = v
	}
}

type sliceMod func(*discovery.EndpointSlice)

// newSlice returns a valid IPv4 EndpointSlice in testNS for the named Service with one
// TCP port "http" 8080 and the given endpoints.
func newSlice(name, service string, eps ...discovery.Endpoint) *discovery.EndpointSlice {
	s := &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: testNS,
			Name:      name,
			Labels:    map[string]string{LabelServiceName: service},
		},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{slicePortSpec("http", 8080, v1.ProtocolTCP)},
		Endpoints:   eps,
	}
	return s
}

func modSlice(s *discovery.EndpointSlice, mods ...sliceMod) *discovery.EndpointSlice {
	for _, m := range mods {
		m(s)
	}
	return s
}

func slicePortSpec(name string, port int32, proto v1.Protocol) discovery.EndpointPort {
	return discovery.EndpointPort{Name: ptr.To(name), Port: ptr.To(port), Protocol: ptr.To(proto)}
}

func withSlicePorts(ports ...discovery.EndpointPort) sliceMod {
	return func(s *discovery.EndpointSlice) { s.Ports = ports }
}

func withAddressType(t discovery.AddressType) sliceMod {
	return func(s *discovery.EndpointSlice) { s.AddressType = t }
}

func withSliceLabel(k, v string) sliceMod {
	return func(s *discovery.EndpointSlice) {
		if v == "" {
			delete(s.Labels, k)
			return
		}
		s.Labels[k] = v
	}
}

func withTriggerTime(t time.Time) sliceMod {
	return func(s *discovery.EndpointSlice) {
		s.Annotations = map[string]string{AnnotationTriggerTime: t.Format(time.RFC3339Nano)}
	}
}

type epMod func(*discovery.Endpoint)

// apiEndpoint returns an endpoint with the given address and no conditions (which the
// API says means ready and serving).
func apiEndpoint(addr string, mods ...epMod) discovery.Endpoint {
	ep := discovery.Endpoint{Addresses: []string{addr}}
	for _, m := range mods {
		m(&ep)
	}
	return ep
}

func on(node string) epMod { return func(e *discovery.Endpoint) { e.NodeName = ptr.To(node) } }

func conditions(ready, serving, terminating *bool) epMod {
	return func(e *discovery.Endpoint) {
		e.Conditions = discovery.EndpointConditions{Ready: ready, Serving: serving, Terminating: terminating}
	}
}

var (
	yes = ptr.To(true)
	no  = ptr.To(false)
)

// ---- expected model values ----

func portName(svc, port string, proto Protocol) ServicePortName {
	return spn(testNS, svc, port, proto)
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, 0, len(ss))
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// modelEP is the model endpoint a nil-conditions API endpoint becomes.
func modelEP(addrPort string, mods ...func(*Endpoint)) Endpoint {
	ap := netip.MustParseAddrPort(addrPort)
	ep := Endpoint{Addr: ap.Addr(), Port: ap.Port(), Ready: true, Serving: true}
	for _, m := range mods {
		m(&ep)
	}
	return ep
}

// basePort is the ServicePort newService("svc") turns into, before endpoints.
func basePort(svc string, mods ...func(*ServicePort)) *ServicePort {
	sp := &ServicePort{
		Name:       portName(svc, "http", ProtocolTCP),
		ClusterIPs: addrs("10.96.0.1"),
		Port:       80,
	}
	for _, m := range mods {
		m(sp)
	}
	return sp
}

func withEndpoints(eps ...Endpoint) func(*ServicePort) {
	return func(sp *ServicePort) { sp.Endpoints = eps }
}

func formatPort(sp *ServicePort) string {
	if sp == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%+v", *sp)
}

// assertPorts checks that the state holds exactly the wanted ports.
func assertPorts(t *testing.T, s *State, want ...*ServicePort) {
	t.Helper()
	var wantNames, gotNames []string
	for _, sp := range want {
		wantNames = append(wantNames, sp.Name.String())
	}
	for _, sp := range s.ServicePorts() {
		gotNames = append(gotNames, sp.Name.String())
	}
	slices.Sort(wantNames)
	slices.Sort(gotNames)
	if !slices.Equal(gotNames, wantNames) {
		t.Errorf("state ports = %v, want %v", gotNames, wantNames)
	}
	for _, w := range want {
		got, ok := s.Lookup(w.Name)
		if ok && !got.Equal(w) {
			t.Errorf("port %v:\n got  %s\n want %s", w.Name, formatPort(got), formatPort(w))
		}
	}
}

func newTestBuilder() *Builder { return NewBuilder(BuilderOptions{NodeName: thisNode}) }

func mustUpsert(t *testing.T, b *Builder, objs ...any) {
	t.Helper()
	if err := upsert(b, objs...); err != nil {
		t.Fatalf("upsert: %v", err)
	}
}

// upsert feeds objects to b and returns the first error; safe off the test goroutine.
func upsert(b *Builder, objs ...any) error {
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *v1.Service:
			err = b.UpsertService(o)
		case *discovery.EndpointSlice:
			err = b.UpsertEndpointSlice(o)
		case *v1.Node:
			err = b.SetNode(o)
		default:
			err = fmt.Errorf("unexpected object %T", o)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func changed(cs ChangeSet) []string {
	var out []string
	for n := range cs.Services {
		out = append(out, n.String())
	}
	slices.Sort(out)
	return out
}

func assertChanges(t *testing.T, cs ChangeSet, wantFull bool, want ...ServicePortName) {
	t.Helper()
	if cs.Full != wantFull {
		t.Errorf("ChangeSet.Full = %v, want %v", cs.Full, wantFull)
	}
	var w []string
	for _, n := range want {
		w = append(w, n.String())
	}
	slices.Sort(w)
	if got := changed(cs); !slices.Equal(got, w) {
		t.Errorf("ChangeSet.Services = %v, want %v", got, w)
	}
}

// ---- conversion of Services ----

func TestBuilderServiceConversion(t *testing.T) {
	tests := []struct {
		name string
		svc  *v1.Service
		want []*ServicePort
	}{
		{
			name: "single-stack ClusterIP",
			svc:  newService("svc"),
			want: []*ServicePort{basePort("svc")},
		},
		{
			name: "dual-stack ClusterIPs keep the primary family first",
			svc:  newService("svc", withClusterIPs("fd00:96::1", "10.96.0.1")),
			want: []*ServicePort{basePort("svc", func(sp *ServicePort) { sp.ClusterIPs = addrs("fd00:96::1", "10.96.0.1") })},
		},
		{
			name: "only spec.clusterIP set (object written before dual-stack)",
			svc: newService("svc", func(s *v1.Service) {
				s.Spec.ClusterIPs = nil
				s.Spec.ClusterIP = "10.96.0.7"
			}),
			want: []*ServicePort{basePort("svc", func(sp *ServicePort) { sp.ClusterIPs = addrs("10.96.0.7") })},
		},
		{
			name: "NodePort",
			svc:  newService("svc", withNodePort(30080)),
			want: []*ServicePort{basePort("svc", func(sp *ServicePort) { sp.NodePort = 30080 })},
		},
		{
			name: "LoadBalancer ingress: VIP by default and explicit, Proxy kept as Proxy, hostname-only dropped",
			svc: newService("svc", withNodePort(30080), withIngress(
				v1.LoadBalancerIngress{IP: "198.51.100.1"},
				v1.LoadBalancerIngress{Hostname: "lb.example.com"},
				v1.LoadBalancerIngress{IP: "198.51.100.2", IPMode: ptr.To(v1.LoadBalancerIPModeVIP)},
				v1.LoadBalancerIngress{IP: "2001:db8::2", Hostname: "lb6.example.com", IPMode: ptr.To(v1.LoadBalancerIPModeProxy)},
			)),
			want: []*ServicePort{basePort("svc", func(sp *ServicePort) {
				sp.NodePort = 30080
				sp.LoadBalancerIngress = []LoadBalancerIngress{
					{IP: netip.MustParseAddr("198.51.100.1"), Mode: IPModeVIP},
					{IP: netip.MustParseAddr("198.51.100.2"), Mode: IPModeVIP},
					{IP: netip.MustParseAddr("2001:db8::2"), Mode: IPModeProxy},
				}
			})},
		},
		{
			name: "externalIPs of both families",
			svc:  newService("svc", withExternalIPs("192.0.2.1", "2001:db8::1")),
			want: []*ServicePort{basePort("svc", func(sp *ServicePort) { sp.ExternalIPs = addrs("192.0.2.1", "2001:db8::1") })},
		},
		{
			name: "loadBalancerSourceRanges are trimmed and masked",
			svc:  newService("svc", withIngress(v1.LoadBalancerIngress{IP: "198.51.100.1"}), withSourceRanges(" 10.1.2.3/8", "2001:db8::/32 ")),
			want: []*ServicePort{basePort("svc", func(sp *ServicePort) {
				sp.LoadBalancerIngress = []LoadBalancerIngress{{IP: netip.MustParseAddr("198.51.100.1")}}
				sp.LoadBalancerSourceRanges = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
			})},
		},
		{
			name: "ClientIP affinity without config defaults to 10800s",
			svc:  newService("svc", withClientIPAffinity(nil)),
			want: []*ServicePort{basePort("svc", func(sp *ServicePort) { sp.AffinityTimeout = 10800 * time.Second })},
		},
		{
			name: "ClientIP affinity with an explicit timeout",
			svc:  newService("svc", withClientIPAffinity(ptr.To[int32](600))),
			want: []*ServicePort{basePort("svc", func(sp *ServicePort) { sp.AffinityTimeout = 600 * time.Second })},
		},
		{
			name: "affinity None ignores a leftover timeout",
			svc: newService("svc", func(s *v1.Service) {
				s.Spec.SessionAffinity = v1.ServiceAffinityNone
				s.Spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](600)}}
			}),
			want: []*ServicePort{basePort("svc")},
		},
		{
			name: "externalTrafficPolicy Local keeps its healthCheckNodePort",
			svc: newService("svc", withNodePort(30080), withIngress(v1.LoadBalancerIngress{IP: "198.51.100.1"}),
				withExternalTrafficPolicy(v1.ServiceExternalTrafficPolicyLocal, 31000)),
			want: []*ServicePort{basePort("svc", func(sp *ServicePort) {
				sp.NodePort = 30080
				sp.LoadBalancerIngress = []LoadBalancerIngress{{IP: netip.MustParseAddr("198.51.100.1")}}
				sp.ExternalPolicy = PolicyLocal
				sp.HealthCheckNodePort = 31000
			})},
		},
		{
			name: "healthCheckNodePort is dropped when externalTrafficPolicy is Cluster",
			svc: newService("svc", withNodePort(30080),
				withExternalTrafficPolicy(v1.ServiceExternalTrafficPolicyCluster, 31000)),
			want: []*ServicePort{basePort("svc", func(sp *ServicePort) { sp.NodePort = 30080 })},
		},
		{
			name: "internalTrafficPolicy Local",
			svc:  newService("svc", withInternalTrafficPolicyLocal),
			want: []*ServicePort{basePort("svc", func(sp *ServicePort) { sp.InternalPolicy = PolicyLocal })},
		},
		{
			name: "one ServicePort per spec port, every protocol, empty protocol means TCP",
			svc: newService("svc", withPorts(
				v1.ServicePort{Name: "dns", Port: 53, Protocol: v1.ProtocolUDP},
				v1.ServicePort{Name: "dns-tcp", Port: 53},
				v1.ServicePort{Name: "sctp", Port: 9999, Protocol: v1.ProtocolSCTP},
			)),
			want: []*ServicePort{
				basePort("svc", func(sp *ServicePort) { sp.Name, sp.Port = portName("svc", "dns", ProtocolUDP), 53 }),
				basePort("svc", func(sp *ServicePort) { sp.Name, sp.Port = portName("svc", "dns-tcp", ProtocolTCP), 53 }),
				basePort("svc", func(sp *ServicePort) { sp.Name, sp.Port = portName("svc", "sctp", ProtocolSCTP), 9999 }),
			},
		},
		{
			name: "the same port name may be used once per protocol",
			svc: newService("svc", withPorts(
				v1.ServicePort{Name: "dns", Port: 53, Protocol: v1.ProtocolUDP},
				v1.ServicePort{Name: "dns", Port: 53, Protocol: v1.ProtocolTCP},
			)),
			want: []*ServicePort{
				basePort("svc", func(sp *ServicePort) { sp.Name, sp.Port = portName("svc", "dns", ProtocolUDP), 53 }),
				basePort("svc", func(sp *ServicePort) { sp.Name, sp.Port = portName("svc", "dns", ProtocolTCP), 53 }),
			},
		},
		{
			name: "IPv4-mapped IPv6 cluster IP is read as IPv4",
			svc:  newService("svc", withClusterIPs("::ffff:10.96.0.9")),
			want: []*ServicePort{basePort("svc", func(sp *ServicePort) { sp.ClusterIPs = addrs("10.96.0.9") })},
		},
		{name: "ExternalName Service is ignored", svc: newService("svc", withType(v1.ServiceTypeExternalName), withClusterIPs())},
		{name: "headless Service is ignored", svc: newService("svc", withClusterIPs("None"))},
		{name: "Service without a cluster IP yet is ignored", svc: newService("svc", withClusterIPs())},
		{
			name: "Service labelled for another service proxy is ignored",
			svc:  newService("svc", withSvcLabel(LabelServiceProxyName, "other-proxy")),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newTestBuilder()
			if err := b.UpsertService(tc.svc); err != nil {
				t.Fatalf("UpsertService: %v", err)
			}
			s, _ := b.Snapshot()
			assertPorts(t, s, tc.want...)
		})
	}
}

// ---- endpoints from EndpointSlices ----

func TestBuilderEndpoints(t *testing.T) {
	twoPortSvc := newService("svc", withPorts(tcpPort("http", 80), v1.ServicePort{Name: "dns", Port: 53, Protocol: v1.ProtocolUDP}))
	httpPort := portName("svc", "http", ProtocolTCP)
	dnsPort := portName("svc", "dns", ProtocolUDP)
	local := func(ep *Endpoint) { ep.NodeName, ep.Local = thisNode, true }
	onNodeB := func(ep *Endpoint) { ep.NodeName = "node-b" }

	tests := []struct {
		name   string
		svc    *v1.Service // default newService("svc")
		slices []*discovery.EndpointSlice
		want   map[ServicePortName][]Endpoint
	}{
		{
			name:   "endpoints take the slice's port number",
			slices: []*discovery.EndpointSlice{newSlice("s1", "svc", apiEndpoint("10.0.0.1"))},
			want:   map[ServicePortName][]Endpoint{httpPort: {modelEP("10.0.0.1:8080")}},
		},
		{
			name: "several slices are merged and sorted by address",
			slices: []*discovery.EndpointSlice{
				newSlice("s2", "svc", apiEndpoint("10.0.0.30"), apiEndpoint("10.0.0.4")),
				newSlice("s1", "svc", apiEndpoint("10.0.0.200"), apiEndpoint("10.0.0.1")),
			},
			want: map[ServicePortName][]Endpoint{httpPort: {
				modelEP("10.0.0.1:8080"), modelEP("10.0.0.4:8080"), modelEP("10.0.0.30:8080"), modelEP("10.0.0.200:8080"),
			}},
		},
		{
			name: "dual-stack slices are merged, IPv4 first",
			svc:  newService("svc", withClusterIPs("10.96.0.1", "fd00:96::1")),
			slices: []*discovery.EndpointSlice{
				modSlice(newSlice("s6", "svc", apiEndpoint("fd00::2")), withAddressType(discovery.AddressTypeIPv6)),
				newSlice("s4", "svc", apiEndpoint("10.0.0.2")),
			},
			want: map[ServicePortName][]Endpoint{httpPort: {modelEP("10.0.0.2:8080"), modelEP("[fd00::2]:8080")}},
		},
		{
			name: "an endpoint in two slices counts once, the ready copy wins",
			slices: []*discovery.EndpointSlice{
				newSlice("s1", "svc", apiEndpoint("10.0.0.1", conditions(no, no, no))),
				newSlice("s2", "svc", apiEndpoint("10.0.0.1", conditions(yes, yes, no)), apiEndpoint("10.0.0.2", conditions(no, no, no))),
				newSlice("s3", "svc", apiEndpoint("10.0.0.2", conditions(yes, yes, no))),
			},
			want: map[ServicePortName][]Endpoint{httpPort: {modelEP("10.0.0.1:8080"), modelEP("10.0.0.2:8080")}},
		},
		{
			name:   "an endpoint listed twice in one slice counts once",
			slices: []*discovery.EndpointSlice{newSlice("s1", "svc", apiEndpoint("10.0.0.1"), apiEndpoint("10.0.0.1"))},
			want:   map[ServicePortName][]Endpoint{httpPort: {modelEP("10.0.0.1:8080")}},
		},
		{
			name: "slice ports are matched to service ports by name and protocol",
			svc:  twoPortSvc,
			slices: []*discovery.EndpointSlice{modSlice(newSlice("s1", "svc", apiEndpoint("10.0.0.1")), withSlicePorts(
				slicePortSpec("http", 9999, v1.ProtocolUDP), // right name, wrong protocol
				slicePortSpec("other", 7070, v1.ProtocolTCP),
				slicePortSpec("dns", 5353, v1.ProtocolUDP),
				slicePortSpec("http", 8080, v1.ProtocolTCP),
			))},
			want: map[ServicePortName][]Endpoint{
				httpPort: {modelEP("10.0.0.1:8080")},
				dnsPort:  {modelEP("10.0.0.1:5353")},
			},
		},
		{
			name: "a slice port without protocol means TCP",
			slices: []*discovery.EndpointSlice{modSlice(newSlice("s1", "svc", apiEndpoint("10.0.0.1")), withSlicePorts(
				discovery.EndpointPort{Name: ptr.To("http"), Port: ptr.To[int32](8080)},
			))},
			want: map[ServicePortName][]Endpoint{httpPort: {modelEP("10.0.0.1:8080")}},
		},
		{
			name: "one address with two target ports (mid-rollout) gives two endpoints",
			slices: []*discovery.EndpointSlice{
				newSlice("s1", "svc", apiEndpoint("10.0.0.1")),
				modSlice(newSlice("s2", "svc", apiEndpoint("10.0.0.1")), withSlicePorts(slicePortSpec("http", 8081, v1.ProtocolTCP))),
			},
			want: map[ServicePortName][]Endpoint{httpPort: {modelEP("10.0.0.1:8080"), modelEP("10.0.0.1:8081")}},
		},
		{
			name: "Local is set from nodeName",
			slices: []*discovery.EndpointSlice{newSlice("s1", "svc",
				apiEndpoint("10.0.0.1", on(thisNode)),
				apiEndpoint("10.0.0.2", on("node-b")),
				apiEndpoint("10.0.0.3"),
			)},
			want: map[ServicePortName][]Endpoint{httpPort: {
				modelEP("10.0.0.1:8080", local), modelEP("10.0.0.2:8080", onNodeB), modelEP("10.0.0.3:8080"),
			}},
		},
		{
			name: "conditions: nil means ready and serving, explicit values are kept",
			slices: []*discovery.EndpointSlice{newSlice("s1", "svc",
				apiEndpoint("10.0.0.1"),
				apiEndpoint("10.0.0.2", conditions(nil, nil, nil)),
				apiEndpoint("10.0.0.3", conditions(no, yes, yes)),
				apiEndpoint("10.0.0.4", conditions(no, no, yes)),
				apiEndpoint("10.0.0.5", conditions(no, no, no)),
				apiEndpoint("10.0.0.6", conditions(yes, nil, nil)),
			)},
			want: map[ServicePortName][]Endpoint{httpPort: {
				modelEP("10.0.0.1:8080"),
				modelEP("10.0.0.2:8080"),
				modelEP("10.0.0.3:8080", func(e *Endpoint) { e.Ready, e.Serving, e.Terminating = false, true, true }),
				modelEP("10.0.0.4:8080", func(e *Endpoint) { e.Ready, e.Serving, e.Terminating = false, false, true }),
				modelEP("10.0.0.5:8080", func(e *Endpoint) { e.Ready, e.Serving, e.Terminating = false, false, false }),
				modelEP("10.0.0.6:8080"),
			}},
		},
		{
			// discovery/v1 Endpoint.Conditions.Serving: "A nil value should be
			// interpreted as true"; upstream endpointslicecache.go addEndpoints does so.
			name: "conditions: nil serving means serving even when not ready",
			slices: []*discovery.EndpointSlice{newSlice("s1", "svc",
				apiEndpoint("10.0.0.1", conditions(no, nil, yes)),
			)},
			want: map[ServicePortName][]Endpoint{httpPort: {
				modelEP("10.0.0.1:8080", func(e *Endpoint) { e.Ready, e.Serving, e.Terminating = false, true, true }),
			}},
		},
		{
			name: "zone and hints are copied",
			slices: []*discovery.EndpointSlice{newSlice("s1", "svc",
				apiEndpoint("10.0.0.1", func(e *discovery.Endpoint) {
					e.Zone = ptr.To("zone-a")
					e.Hints = &discovery.EndpointHints{
						ForZones: []discovery.ForZone{{Name: "zone-a"}, {Name: "zone-b"}},
						ForNodes: []discovery.ForNode{{Name: thisNode}},
					}
				}),
			)},
			want: map[ServicePortName][]Endpoint{httpPort: {modelEP("10.0.0.1:8080", func(e *Endpoint) {
				e.Zone = "zone-a"
				e.ZoneHints = []string{"zone-a", "zone-b"}
				e.NodeHints = []string{thisNode}
			})}},
		},
		{
			name:   "only an endpoint's first address is used",
			slices: []*discovery.EndpointSlice{newSlice("s1", "svc", discovery.Endpoint{Addresses: []string{"10.0.0.2", "10.0.0.1"}})},
			want:   map[ServicePortName][]Endpoint{httpPort: {modelEP("10.0.0.2:8080")}},
		},
		{
			name: "slices labelled headless or for another proxy, and FQDN slices, are ignored",
			slices: []*discovery.EndpointSlice{
				modSlice(newSlice("headless", "svc", apiEndpoint("10.0.0.1")), withSliceLabel(LabelHeadless, "")),
				modSlice(newSlice("headless2", "svc", apiEndpoint("10.0.0.2")), withSliceLabel(LabelHeadless, "true")),
				modSlice(newSlice("other", "svc", apiEndpoint("10.0.0.3")), withSliceLabel(LabelServiceProxyName, "other-proxy")),
				modSlice(newSlice("fqdn", "svc", apiEndpoint("pod.example.com")), withAddressType(discovery.AddressTypeFQDN)),
			},
			want: map[ServicePortName][]Endpoint{httpPort: {modelEP("10.0.0.1:8080")}},
		},
		{
			name: "slices of another service, or of a same-named service in another namespace, are not merged",
			slices: []*discovery.EndpointSlice{
				newSlice("s1", "svc", apiEndpoint("10.0.0.1")),
				newSlice("s2", "other", apiEndpoint("10.0.0.2")),
				func() *discovery.EndpointSlice {
					s := newSlice("s3", "svc", apiEndpoint("10.0.0.3"))
					s.Namespace = "elsewhere"
					return s
				}(),
			},
			want: map[ServicePortName][]Endpoint{httpPort: {modelEP("10.0.0.1:8080")}},
		},
		{
			name:   "a service without slices has no endpoints",
			svc:    twoPortSvc,
			slices: nil,
			want:   map[ServicePortName][]Endpoint{httpPort: nil, dnsPort: nil},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newTestBuilder()
			svc := tc.svc
			if svc == nil {
				svc = newService("svc")
			}
			mustUpsert(t, b, svc)
			for _, s := range tc.slices {
				mustUpsert(t, b, s)
			}
			st, _ := b.Snapshot()
			if st.Len() != len(tc.want) {
				t.Errorf("state has %d ports, want %d", st.Len(), len(tc.want))
			}
			for name, want := range tc.want {
				sp, ok := st.Lookup(name)
				if !ok {
					t.Errorf("port %v missing", name)
					continue
				}
				if !slices.EqualFunc(sp.Endpoints, want, func(a, b Endpoint) bool { return a.Equal(&b) }) {
					t.Errorf("%v endpoints:\n got  %+v\n want %+v", name, sp.Endpoints, want)
				}
			}
		})
	}
}

// An address listed in two slices (an endpoint moving between slices, or a pod IP reused
// before the old Pod is gone) must give the same result whatever order the slices are
// read in. (The loops are long because Go's iteration order over a two-entry map is
// skewed, not 50/50.) Upstream (endpointslicecache.go addEndpoints) prefers the non-terminating
// copy, so a new pod that is not ready yet wins over the terminating pod that used to
// own the IP.
func TestBuilderDuplicateEndpointIsDeterministic(t *testing.T) {
	t.Run("neither copy ready: the non-terminating copy wins", func(t *testing.T) {
		for range 200 {
			b := newTestBuilder()
			mustUpsert(t, b,
				newService("svc"),
				newSlice("old", "svc", apiEndpoint("10.0.0.1", on("node-b"), conditions(no, yes, yes))),
				newSlice("new", "svc", apiEndpoint("10.0.0.1", on("node-c"), conditions(no, no, no))),
			)
			st, _ := b.Snapshot()
			sp, _ := st.Lookup(portName("svc", "http", ProtocolTCP))
			want := modelEP("10.0.0.1:8080", func(e *Endpoint) { e.Ready, e.Serving, e.NodeName = false, false, "node-c" })
			if len(sp.Endpoints) != 1 || !sp.Endpoints[0].Equal(&want) {
				t.Fatalf("endpoints = %+v, want [%+v]", sp.Endpoints, want)
			}
		}
	})
	t.Run("resyncing identical slices with differing copies is no change", func(t *testing.T) {
		b := newTestBuilder()
		objs := []any{
			newService("svc"),
			newSlice("a", "svc", apiEndpoint("10.0.0.1", on(thisNode))),
			newSlice("b", "svc", apiEndpoint("10.0.0.1", on("node-b"))),
		}
		mustUpsert(t, b, objs...)
		b.Snapshot()
		for i := range 200 {
			mustUpsert(t, b, objs...)
			if _, cs := b.Snapshot(); !cs.Empty() {
				t.Fatalf("resync %d: change set %v, want empty", i, changed(cs))
			}
		}
	})
}

// ---- object lifecycles ----

func TestBuilderSliceMovesToAnotherService(t *testing.T) {
	b := newTestBuilder()
	mustUpsert(t, b,
		newService("a", withClusterIPs("10.96.0.1")),
		newService("b", withClusterIPs("10.96.0.2")),
		newSlice("s1", "a", apiEndpoint("10.0.0.1")),
	)
	b.Snapshot()

	mustUpsert(t, b, newSlice("s1", "b", apiEndpoint("10.0.0.1")))
	st, cs := b.Snapshot()
	assertChanges(t, cs, false, portName("a", "http", ProtocolTCP), portName("b", "http", ProtocolTCP))
	assertPorts(t, st,
		basePort("a"),
		basePort("b", func(sp *ServicePort) { sp.ClusterIPs = addrs("10.96.0.2") }, withEndpoints(modelEP("10.0.0.1:8080"))),
	)
}

func TestBuilderDeletions(t *testing.T) {
	setup := func(t *testing.T) *Builder {
		b := newTestBuilder()
		mustUpsert(t, b,
			newService("svc"),
			newSlice("s1", "svc", apiEndpoint("10.0.0.1")),
			newSlice("s2", "svc", apiEndpoint("10.0.0.2")),
			newService("other", withClusterIPs("10.96.0.2")),
		)
		b.Snapshot()
		return b
	}
	other := basePort("other", func(sp *ServicePort) { sp.ClusterIPs = addrs("10.96.0.2") })

	t.Run("deleting a slice removes its endpoints only", func(t *testing.T) {
		b := setup(t)
		b.DeleteEndpointSlice(testNS, "s1")
		st, cs := b.Snapshot()
		assertChanges(t, cs, false, portName("svc", "http", ProtocolTCP))
		assertPorts(t, st, basePort("svc", withEndpoints(modelEP("10.0.0.2:8080"))), other)
	})
	t.Run("deleting an unknown slice is no change", func(t *testing.T) {
		b := setup(t)
		b.DeleteEndpointSlice(testNS, "nope")
		b.DeleteEndpointSlice("elsewhere", "s1")
		if _, cs := b.Snapshot(); !cs.Empty() {
			t.Errorf("change set %v, want empty", changed(cs))
		}
	})
	t.Run("deleting a service removes its ports; its slices come back with it", func(t *testing.T) {
		b := setup(t)
		b.DeleteService(ServiceName{Namespace: testNS, Name: "svc"})
		st, cs := b.Snapshot()
		assertChanges(t, cs, false, portName("svc", "http", ProtocolTCP))
		assertPorts(t, st, other)
		if _, ok := st.Lookup(portName("svc", "http", ProtocolTCP)); ok {
			t.Errorf("deleted service still in state")
		}

		mustUpsert(t, b, newService("svc"))
		st, _ = b.Snapshot()
		assertPorts(t, st, basePort("svc", withEndpoints(modelEP("10.0.0.1:8080"), modelEP("10.0.0.2:8080"))), other)
	})
	t.Run("an ignored update acts as a delete", func(t *testing.T) {
		b := setup(t)
		mustUpsert(t, b, newService("svc", withClusterIPs("None")))
		st, cs := b.Snapshot()
		assertChanges(t, cs, false, portName("svc", "http", ProtocolTCP))
		assertPorts(t, st, other)
	})
	t.Run("removing a port from a service removes just that port", func(t *testing.T) {
		b := newTestBuilder()
		mustUpsert(t, b, newService("svc", withPorts(tcpPort("http", 80), tcpPort("https", 443))))
		b.Snapshot()
		mustUpsert(t, b, newService("svc"))
		st, cs := b.Snapshot()
		assertChanges(t, cs, false, portName("svc", "https", ProtocolTCP))
		assertPorts(t, st, basePort("svc"))
	})
}

func TestBuilderSliceBeforeService(t *testing.T) {
	b := newTestBuilder()
	mustUpsert(t, b, newSlice("s1", "svc", apiEndpoint("10.0.0.1")))
	st, _ := b.Snapshot()
	assertPorts(t, st)

	mustUpsert(t, b, newService("svc"))
	st, cs := b.Snapshot()
	assertChanges(t, cs, false, portName("svc", "http", ProtocolTCP))
	assertPorts(t, st, basePort("svc", withEndpoints(modelEP("10.0.0.1:8080"))))
}

// ---- change sets ----

func TestBuilderFirstSnapshotIsFull(t *testing.T) {
	t.Run("with services", func(t *testing.T) {
		b := newTestBuilder()
		mustUpsert(t, b, newService("svc"))
		st, cs := b.Snapshot()
		assertChanges(t, cs, true)
		if st.Generation != 1 || st.Node.Name != thisNode {
			t.Errorf("Generation = %d, Node.Name = %q", st.Generation, st.Node.Name)
		}
	})
	t.Run("empty", func(t *testing.T) {
		st, cs := newTestBuilder().Snapshot()
		assertChanges(t, cs, true)
		if st == nil || st.Len() != 0 || st.Generation != 1 {
			t.Errorf("state = %+v", st)
		}
	})
}

func TestBuilderChangeSetNamesOnlyChangedPorts(t *testing.T) {
	b := newTestBuilder()
	twoPorts := withPorts(tcpPort("http", 80), v1.ServicePort{Name: "dns", Port: 53, Protocol: v1.ProtocolUDP})
	dnsSlicePorts := withSlicePorts(slicePortSpec("http", 8080, v1.ProtocolTCP), slicePortSpec("dns", 5353, v1.ProtocolUDP))
	mustUpsert(t, b,
		newService("a", twoPorts),
		newSlice("a-http", "a", apiEndpoint("10.0.0.1")),
		newService("b", withClusterIPs("10.96.0.2")),
		newSlice("b-1", "b", apiEndpoint("10.0.1.1")),
	)
	first, _ := b.Snapshot()
	ptrs := func(s *State) map[ServicePortName]*ServicePort {
		m := map[ServicePortName]*ServicePort{}
		for _, sp := range s.ServicePorts() {
			m[sp.Name] = sp
		}
		return m
	}

	steps := []struct {
		name   string
		update func()
		want   []ServicePortName
	}{
		{
			name:   "an update to one service names every port of that service",
			update: func() { mustUpsert(t, b, newService("a", twoPorts, withExternalIPs("192.0.2.1"))) },
			want:   []ServicePortName{portName("a", "http", ProtocolTCP), portName("a", "dns", ProtocolUDP)},
		},
		{
			name:   "a slice change that touches one port of a service names only that port",
			update: func() { mustUpsert(t, b, modSlice(newSlice("a-http", "a", apiEndpoint("10.0.0.1")), dnsSlicePorts)) },
			want:   []ServicePortName{portName("a", "dns", ProtocolUDP)},
		},
		{
			name:   "a new endpoint in another service names that service's port",
			update: func() { mustUpsert(t, b, newSlice("b-1", "b", apiEndpoint("10.0.1.1"), apiEndpoint("10.0.1.2"))) },
			want:   []ServicePortName{portName("b", "http", ProtocolTCP)},
		},
		{
			name:   "a new service names its ports",
			update: func() { mustUpsert(t, b, newService("c", withClusterIPs("10.96.0.3"))) },
			want:   []ServicePortName{portName("c", "http", ProtocolTCP)},
		},
	}
	prev := first
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			step.update()
			st, cs := b.Snapshot()
			assertChanges(t, cs, false, step.want...)
			if st.Generation != prev.Generation+1 {
				t.Errorf("Generation = %d, want %d", st.Generation, prev.Generation+1)
			}
			// Unchanged ports keep their pointer; changed ones get a new one.
			before, after := ptrs(prev), ptrs(st)
			for name, sp := range after {
				if old, ok := before[name]; ok && (old == sp) == cs.Has(name) {
					t.Errorf("%v: pointer kept = %v, but in change set = %v", name, old == sp, cs.Has(name))
				}
			}
			prev = st
		})
	}
}

func TestBuilderUpdateThenRevertIsNoChange(t *testing.T) {
	svc := newService("svc")
	slice := newSlice("s1", "svc", apiEndpoint("10.0.0.1"))
	tests := []struct {
		name   string
		change func(*Builder)
	}{
		{"service spec changed and changed back", func(b *Builder) {
			mustUpsert(t, b, newService("svc", withNodePort(30080)), svc)
		}},
		{"endpoint added and removed", func(b *Builder) {
			mustUpsert(t, b, newSlice("s1", "svc", apiEndpoint("10.0.0.1"), apiEndpoint("10.0.0.2")), slice)
		}},
		{"endpoint readiness flapped", func(b *Builder) {
			mustUpsert(t, b, newSlice("s1", "svc", apiEndpoint("10.0.0.1", conditions(no, no, no))), slice)
		}},
		{"service deleted and re-created", func(b *Builder) {
			b.DeleteService(ServiceName{Namespace: testNS, Name: "svc"})
			mustUpsert(t, b, svc)
		}},
		{"slice deleted and re-created", func(b *Builder) {
			b.DeleteEndpointSlice(testNS, "s1")
			mustUpsert(t, b, slice)
		}},
		{"service created and deleted", func(b *Builder) {
			mustUpsert(t, b, newService("tmp", withClusterIPs("10.96.0.9")))
			b.DeleteService(ServiceName{Namespace: testNS, Name: "tmp"})
		}},
		{"service made invalid and fixed", func(b *Builder) {
			if err := b.UpsertService(newService("svc", withClusterIPs("bogus"))); err == nil {
				t.Fatal("invalid service accepted")
			}
			mustUpsert(t, b, svc)
		}},
		{"several changes, the last one restoring", func(b *Builder) {
			mustUpsert(t, b,
				newService("svc", withClientIPAffinity(nil)),
				newSlice("s1", "svc"),
				newService("svc", withExternalIPs("192.0.2.1")),
				newSlice("s1", "svc", apiEndpoint("10.0.0.9")),
				slice, svc)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newTestBuilder()
			mustUpsert(t, b, svc, slice)
			before, _ := b.Snapshot()
			tc.change(b)
			after, cs := b.Snapshot()
			if !cs.Empty() || cs.Full {
				t.Errorf("change set = %v (full %v), want empty", changed(cs), cs.Full)
			}
			if after != before || after.Generation != before.Generation {
				t.Errorf("got a new State (generation %d -> %d), want the same pointer", before.Generation, after.Generation)
			}
		})
	}
}

func TestBuilderResyncIsNoChange(t *testing.T) {
	b := newTestBuilder()
	objs := []any{
		newService("a", withNodePort(30080), withIngress(v1.LoadBalancerIngress{IP: "198.51.100.1"})),
		newService("b", withClusterIPs("10.96.0.2", "fd00:96::2"), withClientIPAffinity(nil)),
		newSlice("a-1", "a", apiEndpoint("10.0.0.1", on(thisNode)), apiEndpoint("10.0.0.2")),
		newSlice("a-2", "a", apiEndpoint("10.0.0.3", conditions(no, yes, yes))),
		modSlice(newSlice("b-6", "b", apiEndpoint("fd00::1")), withAddressType(discovery.AddressTypeIPv6)),
		&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: thisNode, Labels: map[string]string{LabelTopologyZone: "zone-a"}}},
	}
	mustUpsert(t, b, objs...)
	first, _ := b.Snapshot()
	<-b.Changed()

	// An informer resync delivers every object again, unchanged (fresh copies).
	mustUpsert(t, b, objs...)
	st, cs := b.Snapshot()
	if !cs.Empty() || st != first {
		t.Errorf("resync: change set %v (full %v), new state %v; want nothing", changed(cs), cs.Full, st != first)
	}
}

func TestBuilderNodeChangeIsFull(t *testing.T) {
	b := newTestBuilder()
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: thisNode, Labels: map[string]string{LabelTopologyZone: "zone-a"}}}
	mustUpsert(t, b, newService("svc"), node)
	first, _ := b.Snapshot()

	mustUpsert(t, b, node.DeepCopy())
	if st, cs := b.Snapshot(); st != first || !cs.Empty() {
		t.Errorf("unchanged node: change set %v full=%v, want nothing", changed(cs), cs.Full)
	}

	zoneB := node.DeepCopy()
	zoneB.Labels[LabelTopologyZone] = "zone-b"
	mustUpsert(t, b, zoneB)
	st, cs := b.Snapshot()
	assertChanges(t, cs, true)
	if st.Node.Zone != "zone-b" || st.Generation != first.Generation+1 {
		t.Errorf("Node.Zone = %q, Generation = %d", st.Node.Zone, st.Generation)
	}
	// Service ports are untouched by a node change and keep their pointers.
	name := portName("svc", "http", ProtocolTCP)
	a, _ := first.Lookup(name)
	bb, _ := st.Lookup(name)
	if a != bb {
		t.Errorf("service port pointer changed on a node update")
	}
	// The next snapshot is partial again.
	if _, cs := b.Snapshot(); cs.Full {
		t.Errorf("snapshot after the node change is still full")
	}
}

func TestBuilderTriggerTimes(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 600_000_000, time.UTC)
	svcA := ServiceName{Namespace: testNS, Name: "a"}
	svcB := ServiceName{Namespace: testNS, Name: "b"}

	b := newTestBuilder()
	mustUpsert(t, b, newService("a"), newService("b", withClusterIPs("10.96.0.2")))
	b.Snapshot()

	mustUpsert(t, b,
		modSlice(newSlice("a-1", "a", apiEndpoint("10.0.0.1")), withTriggerTime(t0.Add(2*time.Second))),
		modSlice(newSlice("a-2", "a", apiEndpoint("10.0.0.2")), withTriggerTime(t0)),
		modSlice(newSlice("a-1", "a", apiEndpoint("10.0.0.3")), withTriggerTime(t0.Add(5*time.Second))),
		modSlice(newSlice("b-1", "b", apiEndpoint("10.0.1.1")), withTriggerTime(t0.Add(time.Second))),
		modSlice(newSlice("b-2", "b", apiEndpoint("10.0.1.2")), func(s *discovery.EndpointSlice) {
			s.Annotations = map[string]string{AnnotationTriggerTime: "not a time"}
		}),
	)
	_, cs := b.Snapshot()
	want := map[ServiceName]time.Time{svcA: t0, svcB: t0.Add(time.Second)}
	if !maps.EqualFunc(cs.TriggerTimes, want, time.Time.Equal) {
		t.Errorf("TriggerTimes = %v, want %v (earliest per service)", cs.TriggerTimes, want)
	}

	// Trigger times are reported once.
	mustUpsert(t, b, newSlice("b-1", "b", apiEndpoint("10.0.1.9")))
	if _, cs := b.Snapshot(); len(cs.TriggerTimes) != 0 {
		t.Errorf("TriggerTimes reported again: %v", cs.TriggerTimes)
	}
}

func TestBuilderChangedNotifies(t *testing.T) {
	notified := func(b *Builder) bool {
		select {
		case <-b.Changed():
			return true
		default:
			return false
		}
	}
	b := newTestBuilder()
	if notified(b) {
		t.Fatal("new builder notified")
	}
	mustUpsert(t, b, newService("a"), newService("b", withClusterIPs("10.96.0.2")))
	if !notified(b) {
		t.Error("no notification after upserts")
	}
	if notified(b) {
		t.Error("two upserts gave two notifications; they should fold into one")
	}

	mustUpsert(t, b, newSlice("s1", "orphan", apiEndpoint("10.0.0.1")))
	mustUpsert(t, b, newService("x", withType(v1.ServiceTypeExternalName), withClusterIPs()))
	if notified(b) {
		t.Error("a slice without a service and an ignored service notified")
	}

	mustUpsert(t, b, newSlice("s2", "a", apiEndpoint("10.0.0.1")))
	if !notified(b) {
		t.Error("no notification after a slice change")
	}
	b.DeleteService(ServiceName{Namespace: testNS, Name: "b"})
	if !notified(b) {
		t.Error("no notification after a delete")
	}
	mustUpsert(t, b, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: thisNode, Labels: map[string]string{LabelTopologyZone: "z"}}})
	if !notified(b) {
		t.Error("no notification after a node change")
	}

	select {
	case <-b.Initialized():
		t.Fatal("Initialized closed before MarkInitialized")
	default:
	}
	b.MarkInitialized()
	b.MarkInitialized() // idempotent
	if !notified(b) {
		t.Error("no notification after MarkInitialized")
	}
	select {
	case <-b.Initialized():
	default:
		t.Error("Initialized not closed after MarkInitialized")
	}
}

// ---- bad input ----

func TestBuilderRejectsInvalidObjects(t *testing.T) {
	opts := BuilderOptions{NodeName: thisNode, NodePortRange: PortRange{Min: 30000, Max: 32767}}
	badSvc := func(mods ...svcMod) *v1.Service {
		return newService("bad", append([]svcMod{withClusterIPs("10.96.0.2")}, mods...)...)
	}
	badSlice := func(mods ...sliceMod) *discovery.EndpointSlice {
		return modSlice(newSlice("bad-1", "bad", apiEndpoint("10.0.9.1")), mods...)
	}
	withEPs := func(eps ...discovery.Endpoint) sliceMod {
		return func(s *discovery.EndpointSlice) { s.Endpoints = append(s.Endpoints, eps...) }
	}
	portsOf := func(ps ...v1.ServicePort) svcMod { return withPorts(ps...) }

	tests := []struct {
		name      string
		svc       *v1.Service
		slice     *discovery.EndpointSlice
		wantField string
	}{
		// Services.
		{name: "unparseable clusterIP", svc: badSvc(withClusterIPs("10.96.0.300")), wantField: "spec.clusterIPs[0]"},
		{name: "clusterIP with a zone", svc: badSvc(withClusterIPs("fd00::1%eth0")), wantField: "spec.clusterIPs[0]"},
		{name: "two clusterIPs of one family", svc: badSvc(withClusterIPs("10.96.0.2", "10.96.0.3")), wantField: "spec.clusterIPs"},
		{name: "three clusterIPs", svc: badSvc(withClusterIPs("10.96.0.2", "fd00::2", "10.96.0.3")), wantField: "spec.clusterIPs"},
		{name: "loopback clusterIP", svc: badSvc(withClusterIPs("127.0.0.1")), wantField: "spec.clusterIPs[0]"},
		{name: "IPv6 loopback secondary clusterIP", svc: badSvc(withClusterIPs("10.96.0.2", "::1")), wantField: "spec.clusterIPs[1]"},
		{name: "link-local clusterIP", svc: badSvc(withClusterIPs("169.254.169.254")), wantField: "spec.clusterIPs[0]"},
		{name: "multicast clusterIP", svc: badSvc(withClusterIPs("224.0.0.1")), wantField: "spec.clusterIPs[0]"},
		{name: "unspecified clusterIP", svc: badSvc(withClusterIPs("0.0.0.0")), wantField: "spec.clusterIPs[0]"},
		{name: "port 0", svc: badSvc(portsOf(tcpPort("http", 0))), wantField: "spec.ports[0].port"},
		{name: "port above 65535", svc: badSvc(portsOf(tcpPort("a", 80), tcpPort("http", 65536))), wantField: "spec.ports[1].port"},
		{name: "nodePort outside the configured range", svc: badSvc(withNodePort(8080)), wantField: "spec.ports[0].nodePort"},
		{name: "unknown protocol", svc: badSvc(portsOf(v1.ServicePort{Name: "http", Port: 80, Protocol: "ICMP"})), wantField: "spec.ports[0].protocol"},
		{name: "duplicate port and protocol", svc: badSvc(portsOf(tcpPort("a", 80), tcpPort("b", 80))), wantField: "spec.ports[1]"},
		{name: "duplicate port names", svc: badSvc(portsOf(tcpPort("http", 80), tcpPort("http", 81))), wantField: "spec.ports[1].name"},
		{name: "bad externalIP", svc: badSvc(withExternalIPs("192.0.2.1", "not-an-ip")), wantField: "spec.externalIPs[1]"},
		{name: "loopback externalIP", svc: badSvc(withExternalIPs("127.0.0.53")), wantField: "spec.externalIPs[0]"},
		{name: "bad load balancer ingress IP", svc: badSvc(withIngress(v1.LoadBalancerIngress{IP: "198.51.100.300"})), wantField: "status.loadBalancer.ingress[0].ip"},
		{
			name:      "unknown ipMode",
			svc:       badSvc(withIngress(v1.LoadBalancerIngress{IP: "198.51.100.1"}, v1.LoadBalancerIngress{IP: "198.51.100.2", IPMode: ptr.To[v1.LoadBalancerIPMode]("Tunnel")})),
			wantField: "status.loadBalancer.ingress[1].ipMode",
		},
		{name: "bad loadBalancerSourceRange", svc: badSvc(withSourceRanges("10.0.0.0/8", "10.0.0.0/33")), wantField: "spec.loadBalancerSourceRanges[1]"},
		{name: "affinity timeout 0", svc: badSvc(withClientIPAffinity(ptr.To[int32](0))), wantField: "spec.sessionAffinityConfig.clientIP.timeoutSeconds"},
		{name: "affinity timeout above one day", svc: badSvc(withClientIPAffinity(ptr.To[int32](86401))), wantField: "spec.sessionAffinityConfig.clientIP.timeoutSeconds"},
		{
			name:      "healthCheckNodePort outside the node port range",
			svc:       badSvc(withNodePort(30080), withExternalTrafficPolicy(v1.ServiceExternalTrafficPolicyLocal, 10256)),
			wantField: "spec.healthCheckNodePort",
		},

		// EndpointSlices. The Service "bad" exists and is valid: only the slice is at fault.
		{name: "slice without service-name label", slice: badSlice(withSliceLabel(LabelServiceName, "")), wantField: "metadata.labels[kubernetes.io/service-name]"},
		{name: "slice with unknown addressType", slice: badSlice(withAddressType("IPv5")), wantField: "addressType"},
		{name: "IPv6 endpoint in an IPv4 slice", slice: badSlice(withEPs(apiEndpoint("fd00::1"))), wantField: "endpoints[1].addresses[0]"},
		{
			name:      "IPv4 endpoint in an IPv6 slice",
			slice:     modSlice(newSlice("bad-1", "bad", apiEndpoint("fd00::1"), apiEndpoint("10.0.9.2")), withAddressType(discovery.AddressTypeIPv6)),
			wantField: "endpoints[1].addresses[0]",
		},
		{name: "endpoint with no addresses", slice: badSlice(withEPs(discovery.Endpoint{})), wantField: "endpoints[1].addresses"},
		{name: "unparseable endpoint address", slice: badSlice(withEPs(apiEndpoint("10.0.9.x"))), wantField: "endpoints[1].addresses[0]"},
		{name: "loopback endpoint", slice: badSlice(withEPs(apiEndpoint("127.0.0.1"))), wantField: "endpoints[1].addresses[0]"},
		{name: "link-local endpoint", slice: badSlice(withEPs(apiEndpoint("169.254.1.1"))), wantField: "endpoints[1].addresses[0]"},
		{name: "multicast endpoint", slice: badSlice(withEPs(apiEndpoint("239.1.1.1"))), wantField: "endpoints[1].addresses[0]"},
		{
			name:      "slice port without a number",
			slice:     badSlice(withSlicePorts(discovery.EndpointPort{Name: ptr.To("http"), Protocol: ptr.To(v1.ProtocolTCP)})),
			wantField: "ports[0].port",
		},
		{name: "slice port above 65535", slice: badSlice(withSlicePorts(slicePortSpec("http", 70000, v1.ProtocolTCP))), wantField: "ports[0].port"},
		{name: "slice port 0", slice: badSlice(withSlicePorts(slicePortSpec("http", 0, v1.ProtocolTCP))), wantField: "ports[0].port"},
		{
			name:      "duplicate slice port names",
			slice:     badSlice(withSlicePorts(slicePortSpec("http", 8080, v1.ProtocolTCP), slicePortSpec("http", 8081, v1.ProtocolTCP))),
			wantField: "ports[1].name",
		},
		{name: "slice port with unknown protocol", slice: badSlice(withSlicePorts(slicePortSpec("http", 8080, "ICMP"))), wantField: "ports[0].protocol"},
	}

	goodWant := basePort("good", func(sp *ServicePort) { sp.NodePort = 30080 }, withEndpoints(modelEP("10.0.0.1:8080")))

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBuilder(opts)
			if tc.slice != nil {
				mustUpsert(t, b, badSvc())
			}
			b.Snapshot()

			var err error
			wantKind, wantName := "Service", "bad"
			if tc.svc != nil {
				err = b.UpsertService(tc.svc)
			} else {
				wantKind, wantName = "EndpointSlice", tc.slice.Name
				err = b.UpsertEndpointSlice(tc.slice)
			}
			// A valid service changed alongside is unaffected.
			mustUpsert(t, b, newService("good", withNodePort(30080)), newSlice("good-1", "good", apiEndpoint("10.0.0.1")))

			// (a) the error names the object and the field.
			var ioe *InvalidObjectError
			if !errors.As(err, &ioe) {
				t.Fatalf("error = %v (%T), want *InvalidObjectError", err, err)
			}
			if ioe.Kind != wantKind || ioe.Namespace != testNS || ioe.Name != wantName {
				t.Errorf("error is about %s %s/%s, want %s %s/%s", ioe.Kind, ioe.Namespace, ioe.Name, wantKind, testNS, wantName)
			}
			var fields []string
			for _, e := range ioe.Errs {
				fields = append(fields, e.Field)
			}
			if !slices.Contains(fields, tc.wantField) {
				t.Errorf("error fields = %v, want %q among them", fields, tc.wantField)
			}
			if ioe.Reason() == "" || !strings.Contains(err.Error(), tc.wantField) {
				t.Errorf("Reason() = %q, Error() = %q", ioe.Reason(), err.Error())
			}

			st, _ := b.Snapshot()
			// (b) the bad object is absent.
			if tc.svc != nil {
				for _, sp := range st.ServicePorts() {
					if sp.Name.Name == "bad" {
						t.Errorf("invalid service's port %v is in the state", sp.Name)
					}
				}
			} else {
				sp, ok := st.Lookup(portName("bad", "http", ProtocolTCP))
				if !ok {
					t.Fatalf("the valid service of the invalid slice is missing")
				}
				if len(sp.Endpoints) != 0 {
					t.Errorf("endpoints of the invalid slice are in the state: %+v", sp.Endpoints)
				}
			}
			// (c) the valid service is present and correct.
			if got, ok := st.Lookup(goodWant.Name); !ok || !got.Equal(goodWant) {
				t.Errorf("valid service:\n got  %s\n want %s", formatPort(got), formatPort(goodWant))
			}
		})
	}
}

func TestBuilderInvalidUpdateRemovesAndFixRestores(t *testing.T) {
	svcPort := portName("svc", "http", ProtocolTCP)
	t.Run("service", func(t *testing.T) {
		b := newTestBuilder()
		mustUpsert(t, b, newService("svc"), newSlice("s1", "svc", apiEndpoint("10.0.0.1")))
		b.Snapshot()

		if err := b.UpsertService(newService("svc", withPorts(tcpPort("http", 0)))); err == nil {
			t.Fatal("invalid update accepted")
		}
		st, cs := b.Snapshot()
		assertChanges(t, cs, false, svcPort)
		assertPorts(t, st)

		mustUpsert(t, b, newService("svc"))
		st, cs = b.Snapshot()
		assertChanges(t, cs, false, svcPort)
		assertPorts(t, st, basePort("svc", withEndpoints(modelEP("10.0.0.1:8080"))))
	})
	t.Run("slice", func(t *testing.T) {
		b := newTestBuilder()
		mustUpsert(t, b, newService("svc"), newSlice("s1", "svc", apiEndpoint("10.0.0.1")), newSlice("s2", "svc", apiEndpoint("10.0.0.2")))
		b.Snapshot()

		if err := b.UpsertEndpointSlice(newSlice("s1", "svc", apiEndpoint("10.0.0.1"), apiEndpoint("127.0.0.1"))); err == nil {
			t.Fatal("invalid update accepted")
		}
		st, cs := b.Snapshot()
		assertChanges(t, cs, false, svcPort)
		assertPorts(t, st, basePort("svc", withEndpoints(modelEP("10.0.0.2:8080"))))

		mustUpsert(t, b, newSlice("s1", "svc", apiEndpoint("10.0.0.1")))
		st, cs = b.Snapshot()
		assertChanges(t, cs, false, svcPort)
		assertPorts(t, st, basePort("svc", withEndpoints(modelEP("10.0.0.1:8080"), modelEP("10.0.0.2:8080"))))
	})
}

// ---- the Node ----

func TestBuilderNode(t *testing.T) {
	node := func(mods ...func(*v1.Node)) *v1.Node {
		n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: thisNode}}
		for _, m := range mods {
			m(n)
		}
		return n
	}
	addresses := func(as ...v1.NodeAddress) func(*v1.Node) {
		return func(n *v1.Node) { n.Status.Addresses = as }
	}
	tests := []struct {
		name      string
		node      *v1.Node
		want      Node
		wantField string // "" when valid
	}{
		{
			name: "InternalIP and ExternalIP addresses in order, other types skipped, duplicates once",
			node: node(addresses(
				v1.NodeAddress{Type: v1.NodeHostName, Address: "node-a"},
				v1.NodeAddress{Type: v1.NodeInternalIP, Address: "192.168.1.10"},
				v1.NodeAddress{Type: v1.NodeInternalDNS, Address: "node-a.internal"},
				v1.NodeAddress{Type: v1.NodeInternalIP, Address: "fd00:1::10"},
				v1.NodeAddress{Type: v1.NodeExternalIP, Address: "203.0.113.10"},
				v1.NodeAddress{Type: v1.NodeExternalIP, Address: "192.168.1.10"},
				v1.NodeAddress{Type: v1.NodeExternalIP, Address: "::ffff:203.0.113.10"},
			)),
			want: Node{Name: thisNode, Addresses: addrs("192.168.1.10", "fd00:1::10", "203.0.113.10")},
		},
		{
			name: "zone label",
			node: node(func(n *v1.Node) { n.Labels = map[string]string{LabelTopologyZone: "eu-west-1a"} }),
			want: Node{Name: thisNode, Zone: "eu-west-1a"},
		},
		{
			name: "podCIDRs, masked",
			node: node(func(n *v1.Node) { n.Spec.PodCIDRs = []string{"10.244.1.7/24", "fd00:244:1::/64"} }),
			want: Node{Name: thisNode, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:244:1::/64")}},
		},
		{
			name: "podCIDR alone (old objects)",
			node: node(func(n *v1.Node) { n.Spec.PodCIDR = "10.244.2.0/24" }),
			want: Node{Name: thisNode, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.2.0/24")}},
		},
		{
			name: "deletion timestamp marks the node as deleting",
			node: node(func(n *v1.Node) { n.DeletionTimestamp = ptr.To(metav1.Now()) }),
			want: Node{Name: thisNode, Deleting: true},
		},
		{
			name: "an invalid address is reported, the rest still applies",
			node: node(addresses(
				v1.NodeAddress{Type: v1.NodeInternalIP, Address: "192.168.1.300"},
				v1.NodeAddress{Type: v1.NodeInternalIP, Address: "192.168.1.10"},
			), func(n *v1.Node) { n.Labels = map[string]string{LabelTopologyZone: "z"} }),
			want:      Node{Name: thisNode, Zone: "z", Addresses: addrs("192.168.1.10")},
			wantField: "status.addresses[0].address",
		},
		{
			name: "an invalid podCIDR is reported, the rest still applies",
			node: node(addresses(v1.NodeAddress{Type: v1.NodeInternalIP, Address: "192.168.1.10"}),
				func(n *v1.Node) { n.Spec.PodCIDRs = []string{"10.244.1.0/33", "fd00:244:1::/64"} }),
			want:      Node{Name: thisNode, Addresses: addrs("192.168.1.10"), PodCIDRs: []netip.Prefix{netip.MustParsePrefix("fd00:244:1::/64")}},
			wantField: "spec.podCIDRs[0]",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newTestBuilder()
			b.Snapshot()
			err := b.SetNode(tc.node)
			if tc.wantField == "" && err != nil {
				t.Fatalf("SetNode: %v", err)
			}
			if tc.wantField != "" {
				var ioe *InvalidObjectError
				if !errors.As(err, &ioe) {
					t.Fatalf("error = %v, want *InvalidObjectError", err)
				}
				if ioe.Kind != "Node" || ioe.Name != thisNode || len(ioe.Errs) != 1 || ioe.Errs[0].Field != tc.wantField {
					t.Errorf("error = %+v, want one error for Node %s at %s", ioe, thisNode, tc.wantField)
				}
			}
			st, cs := b.Snapshot()
			if !cs.Full {
				t.Errorf("node change did not ask for a full sync")
			}
			if !st.Node.Equal(&tc.want) {
				t.Errorf("Node = %+v, want %+v", st.Node, tc.want)
			}
		})
	}
}

func TestBuilderNodeOfAnotherNameIgnored(t *testing.T) {
	b := newTestBuilder()
	mustUpsert(t, b, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: thisNode, Labels: map[string]string{LabelTopologyZone: "zone-a"}}})
	first, _ := b.Snapshot()
	<-b.Changed()

	other := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-b", Labels: map[string]string{LabelTopologyZone: "zone-b"}},
		Status:     v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "bogus"}}},
	}
	if err := b.SetNode(other); err != nil {
		t.Errorf("SetNode(other node) = %v, want nil", err)
	}
	st, cs := b.Snapshot()
	if st != first || !cs.Empty() || st.Node.Zone != "zone-a" {
		t.Errorf("another node's object changed the state: %+v, full=%v", st.Node, cs.Full)
	}
	select {
	case <-b.Changed():
		t.Error("another node's object notified")
	default:
	}
}

// ---- concurrency ----

// world is the objects one goroutine last wrote, so the final model is known.
type world struct {
	services map[string]*v1.Service
	slices   map[string]*discovery.EndpointSlice
}

func TestBuilderConcurrentUpdates(t *testing.T) {
	const (
		workers     = 4
		svcsPerWork = 6
		opsPerWork  = 400
	)
	b := newTestBuilder()
	b.MarkInitialized()
	worlds := make([]world, workers)
	var finalNode *v1.Node

	var writers sync.WaitGroup
	stop := make(chan struct{})
	for w := range workers {
		worlds[w] = world{services: map[string]*v1.Service{}, slices: map[string]*discovery.EndpointSlice{}}
		writers.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			wd := &worlds[w]
			for range opsPerWork {
				k := rng.IntN(svcsPerWork)
				svcName := fmt.Sprintf("w%d-s%d", w, k)
				sliceName := fmt.Sprintf("%s-%d", svcName, rng.IntN(2))
				switch rng.IntN(5) {
				case 0, 1:
					svc := newService(svcName,
						withClusterIPs(fmt.Sprintf("10.96.%d.%d", w, k+1)),
						withPorts(tcpPort("http", 80+int32(rng.IntN(2))), v1.ServicePort{Name: "dns", Port: 53, Protocol: v1.ProtocolUDP}))
					if rng.IntN(4) == 0 {
						svc.Spec.InternalTrafficPolicy = ptr.To(v1.ServiceInternalTrafficPolicyLocal)
					}
					if err := upsert(b, svc); err != nil {
						t.Error(err)
					}
					wd.services[svcName] = svc
				case 2:
					b.DeleteService(ServiceName{Namespace: testNS, Name: svcName})
					delete(wd.services, svcName)
				case 3:
					var eps []discovery.Endpoint
					for i := range rng.IntN(4) {
						ready := rng.IntN(3) > 0
						eps = append(eps, apiEndpoint(fmt.Sprintf("10.%d.%d.%d", w, k, i+rng.IntN(3)),
							on(fmt.Sprintf("node-%c", 'a'+rng.IntN(3))), conditions(&ready, &ready, nil)))
					}
					s := modSlice(newSlice(sliceName, svcName, eps...),
						withSlicePorts(slicePortSpec("http", 8080, v1.ProtocolTCP), slicePortSpec("dns", 5353, v1.ProtocolUDP)))
					if err := upsert(b, s); err != nil {
						t.Error(err)
					}
					wd.slices[sliceName] = s
				case 4:
					b.DeleteEndpointSlice(testNS, sliceName)
					delete(wd.slices, sliceName)
				}
			}
		})
	}
	writers.Go(func() {
		for i := range 50 {
			n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: thisNode, Labels: map[string]string{LabelTopologyZone: fmt.Sprintf("zone-%d", i%3)}}}
			if err := upsert(b, n); err != nil {
				t.Error(err)
			}
			finalNode = n
		}
	})

	// The reader checks every snapshot against the previous one: a partial change
	// set names exactly the ports whose pointer changed.
	var reader sync.WaitGroup
	var snapshots int
	reader.Go(func() {
		prev, _ := b.Snapshot()
		check := func() {
			st, cs := b.Snapshot()
			snapshots++
			switch {
			case cs.Empty():
				if st != prev {
					t.Errorf("empty change set with a new State")
				}
				return
			case st.Generation != prev.Generation+1:
				t.Errorf("generation %d after %d", st.Generation, prev.Generation)
			}
			if !cs.Full {
				all := map[ServicePortName]bool{}
				for _, sp := range prev.ServicePorts() {
					all[sp.Name] = true
				}
				for _, sp := range st.ServicePorts() {
					all[sp.Name] = true
				}
				for name := range all {
					a, _ := prev.Lookup(name)
					c, _ := st.Lookup(name)
					if (a != c) != cs.Has(name) {
						t.Errorf("%v: changed=%v but in change set=%v", name, a != c, cs.Has(name))
					}
				}
			}
			prev = st
		}
		for {
			select {
			case <-stop:
				check()
				return
			case <-b.Changed():
				check()
			}
		}
	})
	writers.Wait()
	close(stop)
	reader.Wait()

	final, _ := b.Snapshot()
	ref := newTestBuilder()
	mustUpsert(t, ref, finalNode)
	for _, wd := range worlds {
		for _, s := range wd.slices {
			mustUpsert(t, ref, s)
		}
		for _, svc := range wd.services {
			mustUpsert(t, ref, svc)
		}
	}
	want, _ := ref.Snapshot()
	if !final.Node.Equal(&want.Node) {
		t.Errorf("node = %+v, want %+v", final.Node, want.Node)
	}
	assertPorts(t, final, want.ServicePorts()...)
	if want.Len() == 0 {
		t.Errorf("the final state is empty; the test exercises nothing")
	}
	t.Logf("%d snapshots, %d ports at the end", snapshots, final.Len())
}

// A slice of a family the Service has no cluster IP of (say, left behind when the
// Service went from dual-stack to IPv4 only) lends it no endpoints; the endpoints come
// back when the Service gains that family again.
func TestBuilderIgnoresSlicesOfAnotherFamily(t *testing.T) {
	b := newTestBuilder()
	mustUpsert(t, b,
		newService("a", withClusterIPs("10.96.0.1")),
		newSlice("v4", "a", apiEndpoint("10.0.0.1")),
		modSlice(newSlice("v6", "a", apiEndpoint("fd00::1")), withAddressType(discovery.AddressTypeIPv6)),
	)
	st, _ := b.Snapshot()
	assertPorts(t, st, basePort("a", withEndpoints(modelEP("10.0.0.1:8080"))))

	mustUpsert(t, b, newService("a", withClusterIPs("10.96.0.1", "fd00:96::1")))
	st, cs := b.Snapshot()
	assertChanges(t, cs, false, portName("a", "http", ProtocolTCP))
	assertPorts(t, st, basePort("a",
		func(sp *ServicePort) { sp.ClusterIPs = addrs("10.96.0.1", "fd00:96::1") },
		withEndpoints(modelEP("10.0.0.1:8080"), modelEP("[fd00::1]:8080"))))
}
