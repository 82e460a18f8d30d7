//go:build vmtest

package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kproxy/kproxy/ipvs"
	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/test/envtest"
	"github.com/kproxy/kproxy/test/netns"
	"github.com/kproxy/kproxy/test/vm"
)

// TestVMInsideIPVSMode runs inside the VM TestVMIPVSMode boots: the host's apiserver is
// reachable at $KPROXY_VM_APISERVER, kproxy and a kubeconfig for the apiserver are in
// the VM. It runs kproxy in a node namespace in iptables mode, then in ipvs mode (which
// must remove iptables mode's chains), then in iptables mode again (which must remove
// what IPVS mode left), and finally with --cleanup, checking real connections from a
// client namespace to a ClusterIP and a NodePort on the way.
func TestVMInsideIPVSMode(t *testing.T) {
	vm.SkipUnlessInVM(t)
	guest := os.Getenv(envVMAPIServer)
	if guest == "" {
		t.Fatalf("%s is not set: run TestVMIPVSMode on the host", envVMAPIServer)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// The apiserver's certificate is for 127.0.0.1, the address the host's kubeconfig
	// names; the VM reaches it at the forwarded address.
	cfg, err := clientcmd.BuildConfigFromFlags("", vmKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Host = "https://" + guest
	cfg.TLSClientConfig.ServerName = "127.0.0.1"
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}

	topo := netns.New(t, netns.Spec{LocalPods: 1, RemotePods: 1, Clients: 1, LoadBridgeNetfilter: true})
	node, local, remote, clientNS := topo.Node, topo.Node.Pods[0], topo.Remote.Pods[0], topo.Clients[0]
	for _, p := range []*netns.Pod{local, remote} {
		if _, err := p.ServeTCP(8080); err != nil {
			t.Fatal(err)
		}
	}
	// Inside the node namespace the apiserver is at 127.0.0.1 again, through a relay.
	kubeconfig := apiserverInNamespace(t, &envtest.Env{Config: cfg, Kubeconfig: vmKubeconfig}, node.NS)

	const nodeName = "kproxy-vm-node"
	createNode(ctx, t, c, nodeName, node)
	mustCreate(t, c, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "e2e"}})
	web := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "e2e", Name: "web"},
		Spec:       v1.ServiceSpec{Type: v1.ServiceTypeNodePort, Ports: []v1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: v1.ProtocolTCP}}},
	}
	mustCreate(t, c, web)
	webSlice := slice("web", nodeName, local.V4, remote.V4)
	mustCreate(t, c, webSlice)
	clusterIP := netip.MustParseAddr(web.Spec.ClusterIP)
	nodePort := uint16(web.Spec.Ports[0].NodePort)
	clusterVIP, nodePortVIP := netip.AddrPortFrom(clusterIP, 80), netip.AddrPortFrom(node.V4, nodePort)
	common := []string{"--kubeconfig", kubeconfig, "--hostname-override", nodeName,
		"--cluster-cidr", topo.ClusterCIDR.V4.String() + "," + topo.ClusterCIDR.V6.String(), "-v=2"}
	iptablesMode := append([]string{"--proxy-mode=iptables", "--iptables-min-sync-period=0"}, common...)
	ipvsMode := append([]string{"--proxy-mode=ipvs", "--ipvs-min-sync-period=0"}, common...)
	k := vmKernel{t: t, ctx: ctx, node: node.NS}

	// 1. iptables mode programs its chains.
	kp := startKproxy(t, ctx, node.NS, iptablesMode...)
	netns.Eventually(t, time.Minute, "iptables mode programs the service", func() error {
		if len(k.iptablesModeChains()) == 0 {
			return fmt.Errorf("no iptables-mode chains yet")
		}
		_, err := clientNS.DialTCP(ctx, clusterVIP, time.Second)
		return err
	})
	kp.stop(t)

	// 2. ipvs mode: iptables mode's chains go, IPVS serves the ClusterIP and the NodePort.
	kp = startKproxy(t, ctx, node.NS, ipvsMode...)
	netns.Eventually(t, time.Minute, "ipvs mode programs the service", func() error {
		if !k.hasVirtualServer(clusterVIP) || !k.hasVirtualServer(nodePortVIP) {
			return fmt.Errorf("virtual servers %v and %v not both there yet", clusterVIP, nodePortVIP)
		}
		// The glue (masquerading) comes after the virtual servers in a sync.
		_, err := clientNS.DialTCP(ctx, clusterVIP, time.Second)
		return err
	})
	if left := k.iptablesModeChains(); len(left) > 0 {
		t.Errorf("ipvs mode left iptables mode's chains: %v", left)
	}
	if addrs := k.deviceAddresses(); !addrs[clusterIP] {
		t.Errorf("%s lacks the cluster IP: %v", ipvs.DeviceName, addrs)
	}
	seen := map[string]bool{}
	for i := 0; i < 20 && len(seen) < 2; i++ {
		rep, err := clientNS.DialTCP(ctx, clusterVIP, 2*time.Second)
		if err != nil {
			t.Fatalf("ClusterIP through IPVS: %v (%s)", err, netns.Classify(err))
		}
		seen[rep.Server] = true
	}
	if !seen[local.Label] || !seen[remote.Label] {
		t.Errorf("ClusterIP balanced to %v, want both %s and %s", seen, local.Label, remote.Label)
	}
	netns.Eventually(t, time.Minute, "the NodePort answers through IPVS", func() error {
		rep, err := clientNS.DialTCP(ctx, nodePortVIP, time.Second)
		if err == nil && rep.Server != local.Label && rep.Server != remote.Label {
			err = fmt.Errorf("unexpected server %q", rep.Server)
		}
		return err
	})
	hc := node.HTTPClient(2 * time.Second)
	netns.Eventually(t, time.Minute, "/healthz answers 200", func() error {
		return getJSON(hc, "http://127.0.0.1:10256/healthz", 200, nil)
	})
	if mode, err := get(hc, "http://127.0.0.1:10249/proxyMode"); err != nil || mode != "ipvs" {
		t.Errorf("/proxyMode: %q, %v", mode, err)
	}
	// An endpoint change reaches the kernel: the remote endpoint stops getting connections.
	webSlice.Endpoints = webSlice.Endpoints[:1]
	if err := c.Update(ctx, webSlice); err != nil {
		t.Fatal(err)
	}
	netns.Eventually(t, time.Minute, "the removed endpoint stops getting new connections", func() error {
		for range 6 {
			rep, err := clientNS.DialTCP(ctx, clusterVIP, 2*time.Second)
			if err != nil {
				return err
			}
			if rep.Server != local.Label {
				return fmt.Errorf("connection reached %s", rep.Server)
			}
		}
		return nil
	})
	kp.stop(t)
	if _, err := clientNS.DialTCP(ctx, clusterVIP, 2*time.Second); err != nil {
		t.Errorf("IPVS must keep serving after kproxy exits: %v", err)
	}

	// 3. Back to iptables mode: what IPVS mode left goes.
	kp = startKproxy(t, ctx, node.NS, iptablesMode...)
	netns.Eventually(t, time.Minute, "iptables mode takes over again", func() error {
		if len(k.iptablesModeChains()) == 0 {
			return fmt.Errorf("no iptables-mode chains yet")
		}
		return nil
	})
	if k.hasVirtualServer(clusterVIP) || k.hasVirtualServer(nodePortVIP) {
		t.Error("iptables mode left IPVS mode's virtual servers")
	}
	if addrs := k.deviceAddresses(); addrs != nil {
		t.Errorf("iptables mode left %s: %v", ipvs.DeviceName, addrs)
	}
	if rules := k.save(); strings.Contains(rules, "KUBE-IPVS-FILTER") || strings.Contains(rules, "KUBE-CLUSTER-IP") {
		t.Errorf("iptables mode left IPVS mode's glue:\n%s", rules)
	}
	netns.Eventually(t, time.Minute, "the ClusterIP answers through iptables", func() error {
		_, err := clientNS.DialTCP(ctx, clusterVIP, time.Second)
		return err
	})
	kp.stop(t)

	// 4. --cleanup removes both modes' state and exits 0.
	if out, err := node.Exec(ctx, kproxyBin, "--cleanup"); err != nil {
		t.Fatalf("--cleanup: %v\n%s", err, out)
	}
	if rules := k.save(); strings.Contains(rules, "KUBE-") {
		t.Errorf("KUBE- rules left after --cleanup:\n%s", rules)
	}
	if addrs := k.deviceAddresses(); addrs != nil {
		t.Errorf("%s left after --cleanup", ipvs.DeviceName)
	}
}

// vmKproxy is kproxy running in a namespace.
type vmKproxy struct {
	cmd    *netns.Cmd
	logs   *netns.Output
	cancel context.CancelFunc
	exited chan error
}

// startKproxy starts kproxy in ns; its output is logged if the test fails.
func startKproxy(t *testing.T, ctx context.Context, ns *netns.NS, args ...string) *vmKproxy {
	t.Helper()
	runCtx, cancel := context.WithCancel(ctx)
	k := &vmKproxy{logs: &netns.Output{}, cancel: cancel, exited: make(chan error, 1)}
	k.cmd = ns.Command(runCtx, kproxyBin, args...)
	k.cmd.Stdout, k.cmd.Stderr = k.logs, k.logs
	k.cmd.Cancel = func() error { return k.cmd.Process.Signal(syscall.SIGTERM) }
	if err := k.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { k.exited <- k.cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-k.exited
		if t.Failed() {
			t.Logf("kproxy %s output:\n%s", strings.Join(args[:1], " "), k.logs.String())
		}
	})
	return k
}

// stop sends SIGTERM and requires exit status 0, and that switching modes removed the
// other mode's state without errors.
func (k *vmKproxy) stop(t *testing.T) {
	t.Helper()
	k.cancel()
	select {
	case <-k.exited:
		k.exited <- nil // for the cleanup
		if code := k.cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("kproxy exited with status %d after SIGTERM, want 0\n%s", code, k.logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("kproxy did not stop after SIGTERM")
	}
	if logs := k.logs.String(); strings.Contains(logs, "Failed to remove") {
		t.Errorf("kproxy failed to remove the other mode's state:\n%s", logs)
	}
}

// vmKernel inspects the node namespace's kernel state.
type vmKernel struct {
	t    *testing.T
	ctx  context.Context
	node *netns.NS
}

// save returns the nat, filter and mangle rules of both iptables backends.
func (k vmKernel) save() string {
	var b strings.Builder
	for _, bin := range []string{"iptables-nft-save", "iptables-legacy-save"} {
		out, err := k.node.Exec(k.ctx, bin)
		if err != nil {
			k.t.Fatalf("%s: %v\n%s", bin, err, out)
		}
		b.Write(out)
	}
	return b.String()
}

// iptablesModeChains lists the chains that only iptables mode creates.
func (k vmKernel) iptablesModeChains() []string {
	var out []string
	table := ""
	for _, line := range strings.Split(k.save(), "\n") {
		if strings.HasPrefix(line, "*") {
			table = line[1:]
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(line, ":"), " ")
		if !strings.HasPrefix(line, ":") {
			continue
		}
		switch {
		case strings.HasPrefix(name, "KUBE-SVC-"), strings.HasPrefix(name, "KUBE-SEP-"), strings.HasPrefix(name, "KUBE-DST-"),
			name == "KUBE-NODEPORTS", name == "KUBE-EXTERNAL-SERVICES", name == "KUBE-PROXY-CANARY",
			table == "filter" && name == "KUBE-SERVICES":
			out = append(out, table+"/"+name)
		}
	}
	return out
}

// netlink opens the IPVS kernel interface of the node namespace.
func (k vmKernel) netlink() *ipvs.Netlink {
	h, err := ipvs.NewNetlink(ipvs.NetlinkOptions{Netns: k.node.Path()})
	if err != nil {
		k.t.Fatal(err)
	}
	return h
}

// hasVirtualServer reports whether IPVS has a TCP virtual server for vip.
func (k vmKernel) hasVirtualServer(vip netip.AddrPort) bool {
	h := k.netlink()
	defer h.Close()
	servers, err := h.VirtualServers(k.ctx, proxier.IPv4)
	if err != nil {
		k.t.Fatal(err)
	}
	for _, vs := range servers {
		if vs.Addr == vip.Addr() && vs.Port == vip.Port() && vs.Protocol == proxier.ProtocolTCP {
			return true
		}
	}
	return false
}

// deviceAddresses returns the IPv4 addresses on kube-ipvs0, nil when it does not exist.
func (k vmKernel) deviceAddresses() map[netip.Addr]bool {
	h := k.netlink()
	defer h.Close()
	addrs, exists, err := h.DeviceAddresses(k.ctx, proxier.IPv4)
	if err != nil {
		k.t.Fatal(err)
	}
	if !exists {
		return nil
	}
	out := map[netip.Addr]bool{}
	for _, a := range addrs {
		out[a] = true
	}
	return out
}
