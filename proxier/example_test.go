package proxier_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kproxy/kproxy/proxier"
)

func endpointList(eps []*proxier.Endpoint) string {
	s := make([]string, 0, len(eps))
	for _, ep := range eps {
		s = append(s, ep.String())
	}
	return "[" + strings.Join(s, " ") + "]"
}

// A backend, or its tests, can assemble a State by hand and ask which endpoints a
// packet may reach from this node. Here external traffic is restricted to local
// endpoints, and one endpoint is shutting down.
func ExampleCategorizeEndpoints() {
	ready := func(addr, node string) proxier.Endpoint {
		return proxier.Endpoint{Addr: netip.MustParseAddr(addr), Port: 8080, Ready: true, Serving: true,
			NodeName: node, Local: node == "node-a"}
	}
	terminating := ready("10.244.3.9", "node-c")
	terminating.Ready, terminating.Terminating = false, true

	web := &proxier.ServicePort{
		Name: proxier.ServicePortName{
			ServiceName: proxier.ServiceName{Namespace: "default", Name: "web"},
			Port:        "http",
			Protocol:    proxier.ProtocolTCP,
		},
		ClusterIPs:     []netip.Addr{netip.MustParseAddr("10.96.0.10")},
		Port:           80,
		NodePort:       30080,
		ExternalPolicy: proxier.PolicyLocal,
		Endpoints: []proxier.Endpoint{
			ready("10.244.1.5", "node-a"),
			ready("10.244.2.7", "node-b"),
			terminating,
		},
	}
	state := proxier.NewState(proxier.Node{Name: "node-a"}, web)

	for _, sp := range state.ServicePorts() {
		sel := proxier.CategorizeEndpoints(sp, &state.Node)
		fmt.Println(sp.Name)
		fmt.Println("  cluster traffic:", endpointList(sel.Cluster))
		fmt.Println("  local traffic:  ", endpointList(sel.Local))
		fmt.Println("  reachable:      ", endpointList(sel.AllReachable))
		fmt.Println("  has endpoints:  ", sel.HasAny)
	}
	// Output:
	// default/web:http/tcp
	//   cluster traffic: [10.244.1.5:8080 10.244.2.7:8080]
	//   local traffic:   [10.244.1.5:8080]
	//   reachable:       [10.244.1.5:8080 10.244.2.7:8080]
	//   has endpoints:   true
}

// A Builder fed API objects and a Runner driving a ProxierFunc make a read-only
// consumer of kproxy's model: this one prints every snapshot instead of programming a
// data plane. The second sync names only the service that changed.
func ExampleProxierFunc() {
	b := proxier.NewBuilder(proxier.BuilderOptions{NodeName: "node-a"})
	svc := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: v1.ServiceSpec{
			ClusterIP:  "10.96.0.10",
			ClusterIPs: []string{"10.96.0.10"},
			Ports:      []v1.ServicePort{{Name: "http", Port: 80, Protocol: v1.ProtocolTCP}},
		},
	}
	slice := func(addrs ...string) *discovery.EndpointSlice {
		s := &discovery.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: "default", Name: "web-abcde",
				Labels: map[string]string{proxier.LabelServiceName: "web"},
			},
			AddressType: discovery.AddressTypeIPv4,
			Ports:       []discovery.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(v1.ProtocolTCP)}},
		}
		for _, a := range addrs {
			s.Endpoints = append(s.Endpoints, discovery.Endpoint{Addresses: []string{a}, NodeName: ptr.To("node-b")})
		}
		return s
	}
	// A controller would do this from its informers; errors name invalid objects.
	if err := b.UpsertService(svc); err != nil {
		fmt.Println(err)
	}
	if err := b.UpsertEndpointSlice(slice("10.244.2.7")); err != nil {
		fmt.Println(err)
	}
	b.MarkInitialized()

	synced := make(chan struct{})
	printer := proxier.ProxierFunc(func(_ context.Context, s *proxier.State, changes proxier.ChangeSet) error {
		fmt.Printf("generation %d, full=%v\n", s.Generation, changes.Full)
		for _, sp := range s.ServicePorts() {
			if !changes.Has(sp.Name) {
				continue
			}
			sel := proxier.CategorizeEndpoints(sp, &s.Node)
			fmt.Printf("  %s %s:%d -> %s\n", sp.Name, sp.ClusterIPs[0], sp.Port, endpointList(sel.Cluster))
		}
		synced <- struct{}{}
		return nil
	})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- proxier.NewRunner(b, printer, proxier.RunnerOptions{}).Start(ctx) }()

	<-synced // the first sync is a full one
	if err := b.UpsertEndpointSlice(slice("10.244.2.7", "10.244.1.5")); err != nil {
		fmt.Println(err)
	}
	<-synced
	cancel()
	fmt.Println("stopped:", <-done)
	// Output:
	// generation 1, full=true
	//   default/web:http/tcp 10.96.0.10:80 -> [10.244.2.7:8080]
	// generation 2, full=false
	//   default/web:http/tcp 10.96.0.10:80 -> [10.244.1.5:8080 10.244.2.7:8080]
	// stopped: <nil>
}
