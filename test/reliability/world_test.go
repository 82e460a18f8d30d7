package reliability

import (
	"context"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kproxy/kproxy/test/envtest"
	"github.com/kproxy/kproxy/test/netns"
)

const (
	// nodeName is the Node object the proxies run as.
	nodeName = "reliability-node"
	// namespace holds the test's Services.
	namespace = "rel"
	// targetPort is where every pod serves TCP.
	targetPort = 8080
	// relayPort is where the API server is reachable inside the node namespace: below
	// the NodePort range, so no NodePort rule can capture the proxy's own API traffic.
	relayPort = 6443
)

// world is one test's cluster: a real API server relayed into a node namespace, pods
// serving TCP, and the two Services the prober targets.
type world struct {
	env        *envtest.Env
	topo       *netns.Topology
	node       *netns.Node
	client     *netns.Host
	kubeconfig string
	// clusterIP is the "cip" ClusterIP Service's address (port 80), backed by a local
	// and a remote pod; nodePort is the "np" NodePort Service's port on the node's
	// address, backed by two local pods.
	clusterIP netip.AddrPort
	nodePort  netip.AddrPort
}

// newWorld builds the cluster and programs nothing: no proxy runs yet.
func newWorld(t *testing.T, opts envtest.Options) *world {
	t.Helper()
	netns.RequireRoot(t)
	env := envtest.Start(t, opts)
	topo := netns.New(t, netns.Spec{LocalPods: 2, RemotePods: 1, Clients: 1})
	w := &world{env: env, topo: topo, node: topo.Node, client: topo.Clients[0]}
	for _, p := range topo.Pods() {
		if _, err := p.ServeTCP(targetPort); err != nil {
			t.Fatal(err)
		}
	}
	w.relayAPIServer(t)

	ctx := t.Context()
	w.createNode(ctx, t)
	w.create(t, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}})
	cip := service("cip", v1.ServiceTypeClusterIP)
	np := service("np", v1.ServiceTypeNodePort)
	local0, local1, remote0 := topo.Node.Pods[0], topo.Node.Pods[1], topo.Remote.Pods[0]
	w.create(t, cip, np, w.endpointSlice("cip", local0, remote0), w.endpointSlice("np", local0, local1))
	w.clusterIP = netip.AddrPortFrom(netip.MustParseAddr(cip.Spec.ClusterIP), 80)
	w.nodePort = netip.AddrPortFrom(w.node.V4, uint16(np.Spec.Ports[0].NodePort))
	return w
}

// relayAPIServer makes the API server reachable on the node namespace's loopback and
// writes the kubeconfig the proxies use. The relay survives an API server restart: it
// dials the API server anew for each connection.
func (w *world) relayAPIServer(t *testing.T) {
	t.Helper()
	u, err := url.Parse(w.env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(relayPort))
	relay, err := w.node.NewRelay(addr, u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(relay.Close)
	cfg := rest.CopyConfig(w.env.Config)
	cfg.Host = "https://" + addr
	w.kubeconfig = filepath.Join(t.TempDir(), "kubeconfig")
	if err := envtest.WriteKubeconfig(cfg, w.kubeconfig); err != nil {
		t.Fatal(err)
	}
}

// createNode creates the Node object with its pod CIDRs and status addresses: both
// proxies wait for the addresses before they program anything.
func (w *world) createNode(ctx context.Context, t *testing.T) {
	t.Helper()
	n := w.node
	w.create(t, &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: nodeName},
		Spec:       v1.NodeSpec{PodCIDR: n.PodCIDR.V4.String(), PodCIDRs: []string{n.PodCIDR.V4.String(), n.PodCIDR.V6.String()}},
	})
	obj := &v1.Node{}
	if err := w.env.Client.Get(ctx, client.ObjectKey{Name: nodeName}, obj); err != nil {
		t.Fatal(err)
	}
	obj.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: n.V4.String()}, {Type: v1.NodeInternalIP, Address: n.V6.String()}}
	if err := w.env.Client.Status().Update(ctx, obj); err != nil {
		t.Fatal(err)
	}
}

// create creates objects, failing the test on the first error.
func (w *world) create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := w.env.Client.Create(t.Context(), o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

// service is a single-port TCP Service on port 80 forwarding to targetPort.
func service(name string, typ v1.ServiceType) *v1.Service {
	return &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec:       v1.ServiceSpec{Type: typ, Ports: []v1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(targetPort), Protocol: v1.ProtocolTCP}}},
	}
}

// endpointSlice is the IPv4 EndpointSlice of Service svc with the pods as ready
// endpoints, each on the node it runs on.
func (w *world) endpointSlice(svc string, pods ...*netns.Pod) *discovery.EndpointSlice {
	s := &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: namespace, Name: svc + "-1", Labels: map[string]string{discovery.LabelServiceName: svc}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: ptr.To(""), Port: ptr.To[int32](targetPort), Protocol: ptr.To(v1.ProtocolTCP)}},
	}
	w.setEndpoints(s, pods...)
	return s
}

// setEndpoints replaces the slice's endpoints with the pods.
func (w *world) setEndpoints(s *discovery.EndpointSlice, pods ...*netns.Pod) {
	s.Endpoints = nil
	for _, p := range pods {
		on := nodeName
		if p.Node != w.node {
			on = "remote-node"
		}
		s.Endpoints = append(s.Endpoints, discovery.Endpoint{Addresses: []string{p.V4.String()}, NodeName: ptr.To(on),
			Conditions: discovery.EndpointConditions{Ready: ptr.To(true)}})
	}
}

// setSliceEndpoints makes the pods the endpoints of Service svc.
func (w *world) setSliceEndpoints(t *testing.T, svc string, pods ...*netns.Pod) {
	t.Helper()
	s := &discovery.EndpointSlice{}
	if err := w.env.Client.Get(t.Context(), client.ObjectKey{Namespace: namespace, Name: svc + "-1"}, s); err != nil {
		t.Fatal(err)
	}
	w.setEndpoints(s, pods...)
	if err := w.env.Client.Update(t.Context(), s); err != nil {
		t.Fatal(err)
	}
}
