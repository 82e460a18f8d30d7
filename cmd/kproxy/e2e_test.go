package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
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

// TestEndToEnd runs the kproxy binary in a node namespace against a real API server
// and sends real connections from a client namespace to a ClusterIP and a NodePort.
func TestEndToEnd(t *testing.T) {
	netns.RequireRoot(t)
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("iptables is not installed")
	}
	env := envtest.Start(t, envtest.Options{})
	topo := netns.New(t, netns.Spec{LocalPods: 1, RemotePods: 1, Clients: 1})
	node, local, remote, clientNS := topo.Node, topo.Node.Pods[0], topo.Remote.Pods[0], topo.Clients[0]
	for _, p := range []*netns.Pod{local, remote} {
		if _, err := p.ServeTCP(8080); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	kubeconfig := apiserverInNamespace(t, env, node.NS)

	const nodeName = "kproxy-e2e-node"
	c := env.Client
	createNode(ctx, t, c, nodeName, node)
	mustCreate(t, c, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "e2e"}})
	web := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "e2e", Name: "web"},
		Spec:       v1.ServiceSpec{Type: v1.ServiceTypeNodePort, Ports: []v1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: v1.ProtocolTCP}}},
	}
	lb := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "e2e", Name: "lb"},
		Spec: v1.ServiceSpec{Type: v1.ServiceTypeLoadBalancer, ExternalTrafficPolicy: v1.ServiceExternalTrafficPolicyLocal,
			Ports: []v1.ServicePort{{Port: 81, TargetPort: intstr.FromInt32(8080), Protocol: v1.ProtocolTCP}}},
	}
	mustCreate(t, c, web, lb)
	mustCreate(t, c,
		slice("web", nodeName, local.V4, remote.V4),
		slice("lb", nodeName, local.V4))
	clusterIP := netip.MustParseAddr(web.Spec.ClusterIP)
	nodePort, hcPort := uint16(web.Spec.Ports[0].NodePort), uint16(lb.Spec.HealthCheckNodePort)
	if nodePort == 0 || hcPort == 0 {
		t.Fatalf("apiserver allocated no node port (%d) or health check port (%d)", nodePort, hcPort)
	}

	// Start kproxy inside the node namespace.
	logs := &netns.Output{}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	cmd := node.Command(runCtx, kproxyBin, "--kubeconfig", kubeconfig, "--hostname-override", nodeName, "--proxy-mode=iptables",
		"--cluster-cidr", topo.ClusterCIDR.V4.String()+","+topo.ClusterCIDR.V6.String(), "--iptables-min-sync-period=0", "-v=2")
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if t.Failed() {
			t.Logf("kproxy output:\n%s", logs.String())
		}
	}()

	// ClusterIP and NodePort from the client, through the node's rules.
	netns.Eventually(t, time.Minute, "the ClusterIP answers", func() error {
		_, err := clientNS.DialTCP(ctx, netip.AddrPortFrom(clusterIP, 80), time.Second)
		return err
	})
	seen := map[string]bool{}
	for i := 0; i < 40 && len(seen) < 2; i++ {
		rep, err := clientNS.DialTCP(ctx, netip.AddrPortFrom(clusterIP, 80), 2*time.Second)
		if err != nil {
			t.Fatalf("ClusterIP: %v (%s)", err, netns.Classify(err))
		}
		seen[rep.Server] = true
	}
	if !seen[local.Label] || !seen[remote.Label] {
		t.Errorf("ClusterIP balanced to %v, want both %s and %s", seen, local.Label, remote.Label)
	}
	netns.Eventually(t, time.Minute, "the NodePort answers", func() error {
		rep, err := clientNS.DialTCP(ctx, netip.AddrPortFrom(node.V4, nodePort), time.Second)
		if err == nil && rep.Server != local.Label && rep.Server != remote.Label {
			err = fmt.Errorf("unexpected server %q", rep.Server)
		}
		return err
	})

	// kproxy's own health, metrics and the Service's health check.
	hc := node.HTTPClient(2 * time.Second)
	var health struct {
		NodeEligible bool `json:"nodeEligible"`
	}
	netns.Eventually(t, time.Minute, "/healthz answers 200", func() error {
		return getJSON(hc, "http://127.0.0.1:10256/healthz", http.StatusOK, &health)
	})
	if !health.NodeEligible {
		t.Error("/healthz: nodeEligible false")
	}
	if err := getJSON(hc, "http://127.0.0.1:10256/livez", http.StatusOK, nil); err != nil {
		t.Error(err)
	}
	metrics, err := get(hc, "http://127.0.0.1:10249/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"kubeproxy_sync_proxy_rules_duration_seconds_count", "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
		"kubeproxy_network_programming_duration_seconds", "kubeproxy_proxy_healthz_total", "rest_client_requests_total", "go_goroutines"} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	var svcHealth struct {
		LocalEndpoints int `json:"localEndpoints"`
		Service        struct{ Namespace, Name string }
	}
	netns.Eventually(t, time.Minute, "the health check node port answers 200", func() error {
		return getJSON(clientNS.HTTPClient(2*time.Second), fmt.Sprintf("http://%s/", netip.AddrPortFrom(node.V4, hcPort)), http.StatusOK, &svcHealth)
	})
	if svcHealth.LocalEndpoints != 1 || svcHealth.Service.Name != "lb" {
		t.Errorf("health check node port: %+v", svcHealth)
	}

	// SIGTERM: exit 0 and leave the rules in place.
	stop()
	select {
	case <-exited:
		// Wait reports the cancellation itself; the exit status is what matters.
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("kproxy exited with status %d after SIGTERM, want 0", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("kproxy did not stop after SIGTERM")
	}
	if _, err := clientNS.DialTCP(ctx, netip.AddrPortFrom(clusterIP, 80), 2*time.Second); err != nil {
		t.Errorf("the rules must survive kproxy's exit: %v", err)
	}

	// --cleanup removes them.
	if out, err := node.Exec(ctx, kproxyBin, "--cleanup"); err != nil {
		t.Fatalf("--cleanup: %v\n%s", err, out)
	}
	saved, err := node.Exec(ctx, "iptables-save", "-t", "nat")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(saved, []byte("KUBE-SERVICES")) {
		t.Errorf("KUBE-SERVICES left after --cleanup:\n%s", saved)
	}
}

// apiserverInNamespace makes the envtest API server reachable at the same address
// from inside ns (a TCP relay on ns's loopback) and returns a kubeconfig for it.
func apiserverInNamespace(t *testing.T, env *envtest.Env, ns *netns.NS) string {
	t.Helper()
	u, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	host := u.Host
	_, port, err := net.SplitHostPort(host)
	if err != nil {
		t.Fatal(err)
	}
	relay, err := ns.NewRelay(net.JoinHostPort("127.0.0.1", port), host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(relay.Close)
	cfg, err := clientcmd.LoadFromFile(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range cfg.Clusters {
		cl.Server = "https://" + net.JoinHostPort("127.0.0.1", port)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func slice(svc, nodeName string, ips ...netip.Addr) *discovery.EndpointSlice {
	s := &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "e2e", Name: svc + "-1", Labels: map[string]string{discovery.LabelServiceName: svc}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: ptr.To(""), Port: ptr.To[int32](8080), Protocol: ptr.To(v1.ProtocolTCP)}},
	}
	for i, ip := range ips {
		on := nodeName
		if i > 0 {
			on = "remote-node"
		}
		s.Endpoints = append(s.Endpoints, discovery.Endpoint{Addresses: []string{ip.String()}, NodeName: ptr.To(on),
			Conditions: discovery.EndpointConditions{Ready: ptr.To(true)}})
	}
	return s
}

func mustCreate(t *testing.T, c client.Client, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := c.Create(context.Background(), o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), err
}

func getJSON(c *http.Client, url string, code int, into any) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != code {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	if resp.Header.Get("Content-Type") != "application/json" {
		return errors.New("GET " + url + ": not JSON")
	}
	if into == nil {
		return nil
	}
	return json.Unmarshal(b, into)
}

// TestInitOnlyInNamespace runs --init-only in a fresh network namespace: it sets the
// namespaced sysctls, skips the host-wide ones it cannot change there, and exits 0.
func TestInitOnlyInNamespace(t *testing.T) {
	ns := netns.NewNS(t, "init-only")
	ctx := context.Background()
	out, err := ns.Exec(ctx, kproxyBin, "--init-only", "--conntrack-tcp-timeout-close-wait=2h")
	if err != nil {
		t.Fatalf("--init-only: %v\n%s", err, out)
	}
	for file, want := range map[string]string{
		"/proc/sys/net/ipv4/conf/all/route_localnet":                  "1",
		"/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_close_wait": "7200",
	} {
		got, err := ns.Exec(ctx, "cat", file)
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(got)) != want {
			t.Errorf("%s = %s, want %s", file, bytes.TrimSpace(got), want)
		}
	}
	if !bytes.Contains(out, []byte("nf_conntrack_max")) {
		t.Errorf("the skipped nf_conntrack_max must be logged:\n%s", out)
	}
}

// createNode creates the Node object of a namespace node with its pod CIDRs and, in
// its status, its addresses: kproxy waits for those before it programs anything.
func createNode(ctx context.Context, t *testing.T, c client.Client, name string, node *netns.Node) {
	t.Helper()
	mustCreate(t, c, &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1.NodeSpec{PodCIDR: node.PodCIDR.V4.String(), PodCIDRs: []string{node.PodCIDR.V4.String(), node.PodCIDR.V6.String()}},
	})
	n := &v1.Node{}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, n); err != nil {
		t.Fatal(err)
	}
	n.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: node.V4.String()}, {Type: v1.NodeInternalIP, Address: node.V6.String()}}
	if err := c.Status().Update(ctx, n); err != nil {
		t.Fatal(err)
	}
}
