package scale

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// Kind is the type of a generated Service.
type Kind string

// The generated Service kinds.
const (
	ClusterIP    Kind = "ClusterIP"
	NodePort     Kind = "NodePort"
	LoadBalancer Kind = "LoadBalancer"
)

// Workload generates the synthetic cluster deterministically: Service i is always the
// same whatever the order or the batch it is created in, so a run can grow a cluster
// from 1,000 to 5,000 Services and get the same first 1,000.
type Workload struct {
	// Seed selects the pseudo-random sequence.
	Seed uint64
	// Namespaces is how many namespaces the Services are spread over.
	Namespaces int
}

// Shape of the workload.
const (
	// ServicePort and TargetPort are every generated Service's port and its endpoints'
	// port; the sentinel pods' servers listen on TargetPort.
	ServicePort = 80
	TargetPort  = 8080
	// maxEndpoints caps endpoints per Service; endpoints are 1 + a geometric variable
	// with mean 9, so the mean is ≈ 9.95 after the cap.
	maxEndpoints = 50
	geometricQ   = 0.9
	// endpointNodes is how many (fake) nodes the endpoints are spread over.
	endpointNodes = 100
)

// Address plans for objects no packet is ever sent to. They lie in ranges the netns
// topology does not use: fake pods in 10.244.128.0/17 of its cluster CIDR (real pods
// are in 10.244.1.0/24 and 10.244.2.0/24), churned pods in 10.244.64.0/18, and load
// balancer ingress IPs in 198.19.0.0/16 of the benchmark range (the underlay is
// 198.18.0.0/24).
var (
	fakePodBase     = netip.MustParseAddr("10.244.128.0")
	fakePodSize     = 1 << 15
	churnPodBase    = netip.MustParseAddr("10.244.64.0")
	churnPodSize    = 1 << 14
	ingressBase     = netip.MustParseAddr("198.19.0.0")
	ingressPoolSize = 1 << 16
)

// ServiceSpec is one generated Service.
type ServiceSpec struct {
	Index     int
	Namespace string
	Name      string
	Kind      Kind
	// Endpoints is the number of endpoints in its EndpointSlice.
	Endpoints int
}

// Service returns the spec of Service i.
func (w Workload) Service(i int) ServiceSpec {
	r := rand.New(rand.NewPCG(w.Seed, uint64(i)))
	kind := ClusterIP
	switch p := r.IntN(100); {
	case p >= 90:
		kind = LoadBalancer
	case p >= 70:
		kind = NodePort
	}
	// floor of an exponential variable with rate -ln(q) is geometric with P(G≥k) = q^k.
	g := int(r.ExpFloat64() / -math.Log(geometricQ))
	return ServiceSpec{
		Index:     i,
		Namespace: w.namespace(i),
		Name:      fmt.Sprintf("svc-%05d", i),
		Kind:      kind,
		Endpoints: min(1+g, maxEndpoints),
	}
}

func (w Workload) namespace(i int) string {
	n := max(w.Namespaces, 1)
	return fmt.Sprintf("scale-%02d", i%n)
}

// NamespaceNames lists the namespaces the workload uses.
func (w Workload) NamespaceNames() []string {
	var out []string
	for i := range max(w.Namespaces, 1) {
		out = append(out, w.namespace(i))
	}
	return out
}

// Object returns the Service object for s.
func (s ServiceSpec) Object() *v1.Service {
	svc := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name, Labels: map[string]string{"app.kubernetes.io/part-of": "kproxy-scale"}},
		Spec: v1.ServiceSpec{
			Type:  v1.ServiceType(s.Kind),
			Ports: []v1.ServicePort{{Name: "http", Port: ServicePort, TargetPort: intstr.FromInt32(TargetPort), Protocol: v1.ProtocolTCP}},
		},
	}
	return svc
}

// IngressIP is the load balancer ingress IP of Service i (only LoadBalancer Services get
// one). The pool wraps after 65,536 Services.
func IngressIP(i int) netip.Addr {
	return nthAddr(ingressBase, i%ingressPoolSize)
}

// Slice returns the EndpointSlice of s.
func (s ServiceSpec) Slice() *discovery.EndpointSlice {
	sl := newSlice(s.Namespace, s.Name)
	for j := range s.Endpoints {
		ip := nthAddr(fakePodBase, (s.Index*maxEndpoints+j)%fakePodSize)
		sl.Endpoints = append(sl.Endpoints, fakeEndpoint(ip, (s.Index+j)%endpointNodes))
	}
	return sl
}

// newSlice returns an empty EndpointSlice for Service svc.
func newSlice(namespace, svc string) *discovery.EndpointSlice {
	return &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: namespace,
			Name:      svc + "-ep",
			Labels: map[string]string{
				discovery.LabelServiceName: svc,
				discovery.LabelManagedBy:   "kproxy-scale-harness",
			},
		},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](TargetPort), Protocol: ptr.To(v1.ProtocolTCP)}},
	}
}

func fakeEndpoint(ip netip.Addr, node int) discovery.Endpoint {
	return discovery.Endpoint{
		Addresses:  []string{ip.String()},
		NodeName:   ptr.To("node-" + strconv.Itoa(node)),
		Conditions: discovery.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
	}
}

// stampTrigger sets the annotation the EndpointSlice controller sets on every change;
// both proxies compute kubeproxy_network_programming_duration_seconds from it.
func stampTrigger(sl *discovery.EndpointSlice, now time.Time) {
	if sl.Annotations == nil {
		sl.Annotations = map[string]string{}
	}
	sl.Annotations[v1.EndpointsLastChangeTriggerTime] = now.UTC().Format(time.RFC3339Nano)
}

// nthAddr returns base + n for an IPv4 base.
func nthAddr(base netip.Addr, n int) netip.Addr {
	b := base.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Totals summarises the first n Services of the workload.
type Totals struct {
	Services      int          `json:"services"`
	Endpoints     int          `json:"endpoints"`
	ByKind        map[Kind]int `json:"byKind"`
	MeanEndpoints float64      `json:"meanEndpoints"`
}

// Totals counts what the first n Services hold.
func (w Workload) Totals(n int) Totals {
	t := Totals{Services: n, ByKind: map[Kind]int{}}
	for i := range n {
		s := w.Service(i)
		t.ByKind[s.Kind]++
		t.Endpoints += s.Endpoints
	}
	if n > 0 {
		t.MeanEndpoints = float64(t.Endpoints) / float64(n)
	}
	return t
}
