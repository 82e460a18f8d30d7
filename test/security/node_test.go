package security

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kproxy/kproxy/test/envtest"
	"github.com/kproxy/kproxy/test/netns"
)

// podPort is where every pod's echo server listens.
const podPort uint16 = 8080

// node is a topology whose node namespace runs the kproxy binary against the shared
// apiserver, with one local pod serving on podPort and two external clients.
type node struct {
	env  *envtest.Env
	topo *netns.Topology
	// name is the Node object's name, unique per test: every kproxy sees every
	// Service, but only its own node's endpoints are local.
	name string
	// namespace holds the test's Services and EndpointSlices.
	namespace string
	logs      *netns.Output
}

// startNode builds the topology, creates the Node and a Kubernetes namespace, starts
// kproxy with its defaults plus extra flags, and waits until /healthz answers 200.
func startNode(t *testing.T, extra ...string) *node {
	t.Helper()
	env := sharedEnv(t)
	topo := netns.New(t, netns.Spec{LocalPods: 1, Clients: 2})
	if _, err := topo.Node.Pods[0].ServeTCP(podPort); err != nil {
		t.Fatal(err)
	}
	n := &node{env: env, topo: topo, name: "node-" + topo.ID, namespace: "sec-" + topo.ID, logs: &netns.Output{}}
	ctx := context.Background()
	mustCreate(t, env.Client, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n.namespace}})
	n.createNodeObject(t)

	kubeconfig := apiserverInNamespace(t, env, topo.Node.NS)
	args := append([]string{"--kubeconfig", kubeconfig, "--hostname-override", n.name, "--proxy-mode=iptables",
		"--cluster-cidr", topo.ClusterCIDR.V4.String(), "--iptables-min-sync-period=0"}, extra...)
	runCtx, stop := context.WithCancel(ctx)
	cmd := topo.Node.Command(runCtx, kproxyBin, args...)
	cmd.Stdout, cmd.Stderr = n.logs, n.logs
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	// Registered after netns.New's cleanup, so it runs first: kproxy stops (and its
	// rules go) before the namespaces do.
	t.Cleanup(func() {
		stop()
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("kproxy %v output:\n%s", args, n.logs.String())
		}
	})
	hc := topo.Node.HTTPClient(2 * time.Second)
	netns.Eventually(t, time.Minute, "kproxy's /healthz answers 200", func() error {
		select {
		case <-exited:
			return fmt.Errorf("kproxy exited: %v", cmd.ProcessState)
		default:
		}
		return get(hc, "http://127.0.0.1:10256/healthz")
	})
	return n
}

// createNodeObject creates the Node with its addresses in its status: kproxy waits for
// them before it programs anything.
func (n *node) createNodeObject(t *testing.T) {
	t.Helper()
	c, nn := n.env.Client, n.topo.Node
	obj := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name},
		Spec: v1.NodeSpec{PodCIDR: nn.PodCIDR.V4.String(), PodCIDRs: []string{nn.PodCIDR.V4.String()}}}
	mustCreate(t, c, obj)
	obj.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: nn.V4.String()}}
	if err := c.Status().Update(context.Background(), obj); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), obj) })
}

// service creates a Service of the test's namespace with one TCP port 80 to the pod's
// podPort, lets mutate shape it first, sets the load-balancer ingress IPs (if any) in
// its status, and gives it an EndpointSlice holding the local pod. It returns the
// Service as the apiserver allocated it.
func (n *node) service(t *testing.T, name string, mutate func(*v1.Service), ingress ...netip.Addr) *v1.Service {
	t.Helper()
	c := n.env.Client
	svc := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: n.namespace, Name: name},
		Spec: v1.ServiceSpec{Ports: []v1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(int32(podPort)),
			Protocol: v1.ProtocolTCP}}},
	}
	if mutate != nil {
		mutate(svc)
	}
	mustCreate(t, c, svc)
	if len(ingress) > 0 {
		for _, ip := range ingress {
			svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, v1.LoadBalancerIngress{IP: ip.String()})
		}
		if err := c.Status().Update(context.Background(), svc); err != nil {
			t.Fatal(err)
		}
	}
	pod := n.topo.Node.Pods[0]
	mustCreate(t, c, &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: n.namespace, Name: name + "-1", Labels: map[string]string{discovery.LabelServiceName: name}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(podPort)), Protocol: ptr.To(v1.ProtocolTCP)}},
		Endpoints: []discovery.Endpoint{{Addresses: []string{pod.V4.String()}, NodeName: ptr.To(n.name),
			Conditions: discovery.EndpointConditions{Ready: ptr.To(true)}}},
	})
	return svc
}

// reachesPod waits until a TCP connection from ns to addr is answered by the local pod.
func (n *node) reachesPod(t *testing.T, from *netns.NS, addr netip.AddrPort) {
	t.Helper()
	pod := n.topo.Node.Pods[0]
	netns.Eventually(t, time.Minute, fmt.Sprintf("%s reaches the pod through %s", from, addr), func() error {
		rep, err := from.DialTCP(context.Background(), addr, time.Second)
		if err == nil && rep.Server != pod.Label {
			err = fmt.Errorf("answered by %q, want %q", rep.Server, pod.Label)
		}
		return err
	})
}

// apiserverInNamespace relays the apiserver onto the node namespace's loopback, at the
// port it has on the host's, and returns a kubeconfig pointing there.
func apiserverInNamespace(t *testing.T, env *envtest.Env, ns *netns.NS) string {
	t.Helper()
	u, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	_, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	local := net.JoinHostPort("127.0.0.1", port)
	r, err := ns.NewRelay(local, u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	cfg, err := clientcmd.LoadFromFile(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range cfg.Clusters {
		cl.Server = "https://" + local
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustCreate(t *testing.T, c client.Client, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := c.Create(context.Background(), o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

// get fetches url and fails unless the answer is 200.
func get(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
