//go:build vmtest

package ipvs

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vishvananda/netlink"

	"github.com/kproxy/kproxy/iptables"
	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/proxier/conntrack"
	"github.com/kproxy/kproxy/proxier/metrics"
	"github.com/kproxy/kproxy/test/netns"
	"github.com/kproxy/kproxy/test/vm"
)

// vmSetup skips outside the VM. The VM loads every module test/netns needs at boot.
func vmSetup(t *testing.T) {
	t.Helper()
	vm.SkipUnlessInVM(t)
}

// TestVMKernelConformance runs the Kernel conformance suite against Netlink on a real
// kernel, in a fresh network namespace: the same checks the Fake passes.
func TestVMKernelConformance(t *testing.T) {
	vmSetup(t)
	ns := netns.NewNS(t, "conformance")
	k, err := NewNetlink(NetlinkOptions{Netns: ns.Path()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })
	kernelConformance(t, k)
}

// vmProxier is a Proxier programming a node namespace through the real kernel.
type vmProxier struct {
	p     *Proxier
	k     *Netlink
	m     *metrics.Metrics
	node  proxier.Node
	ports map[proxier.ServicePortName]*proxier.ServicePort
}

func newVMProxier(t *testing.T, ns *netns.NS, node proxier.Node, plan PlanOptions, glue bool, verbosity int) *vmProxier {
	t.Helper()
	ctx := context.Background()
	k, err := NewNetlink(NetlinkOptions{Netns: ns.Path()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })
	opts := Options{Kernel: k, Plan: plan, Metrics: metrics.New(), Logger: testr.NewWithOptions(t, testr.Options{Verbosity: verbosity})}
	if glue {
		ipt, err := iptables.NewExecKernel(ctx, iptables.ExecOptions{Netns: ns.Path(), Backend: iptables.BackendNFT})
		if err != nil {
			t.Fatal(err)
		}
		opts.Glue = ipt
		ct, err := conntrack.NewNetlink(conntrack.NetlinkOptions{Netns: ns.Path()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ct.Close() })
		opts.Conntrack = ct
	}
	runCtx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	p, err := New(runCtx, opts)
	if err != nil {
		t.Fatal(err)
	}
	return &vmProxier{p: p, k: k, m: opts.Metrics, node: node, ports: map[proxier.ServicePortName]*proxier.ServicePort{}}
}

// set replaces (or with no endpoints argument, keeps) service ports and syncs only them.
func (v *vmProxier) set(t *testing.T, ports ...*proxier.ServicePort) time.Duration {
	t.Helper()
	cs := proxier.ChangeSet{Services: map[proxier.ServicePortName]struct{}{}}
	for _, sp := range ports {
		v.ports[sp.Name] = sp
		cs.Services[sp.Name] = struct{}{}
	}
	return v.sync(t, cs)
}

func (v *vmProxier) sync(t *testing.T, cs proxier.ChangeSet) time.Duration {
	t.Helper()
	all := make([]*proxier.ServicePort, 0, len(v.ports))
	for _, sp := range v.ports {
		all = append(all, sp)
	}
	start := time.Now()
	if err := v.p.Sync(context.Background(), proxier.NewState(v.node, all...), cs); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	return time.Since(start)
}

// writes returns how many state-changing netlink operations the proxier issued so far.
func (v *vmProxier) writes() float64 {
	var n float64
	for _, op := range allOps {
		if IsWrite(op) {
			n += testutil.ToFloat64(v.m.NetlinkOperations.WithLabelValues(op))
		}
	}
	return n
}

// vmService builds a TCP service port in namespace "vm".
func vmService(name string, port uint16, clusterIP netip.Addr, opts ...spOpt) *proxier.ServicePort {
	sp := svcPort(name, port, clusterIP.String(), opts...)
	sp.Name.Namespace = "vm"
	return sp
}

// podEndpoints adds ready endpoints of pods, each on port.
func podEndpoints(port uint16, f netns.Family, pods ...*netns.Pod) spOpt {
	return func(sp *proxier.ServicePort) {
		for _, p := range pods {
			ep := proxier.Endpoint{Addr: p.IP(f), Port: port, Ready: true, Serving: true, NodeName: "remote"}
			if p.Node.Label == "node" {
				ep.NodeName, ep.Local = "node", true
			}
			sp.Endpoints = append(sp.Endpoints, ep)
		}
	}
}

// TestVMProxierTraffic programs a node namespace with the proxier and proves the
// result with real connections from pods and an external client.
func TestVMProxierTraffic(t *testing.T) {
	vmSetup(t)
	ctx := context.Background()
	topo := netns.New(t, netns.Spec{LocalPods: 2, RemotePods: 2, Clients: 1, LoadBridgeNetfilter: true})
	const tcpPort, udpPort = 8080, 5353
	for _, pod := range topo.Pods() {
		if _, err := pod.ServeTCP(tcpPort); err != nil {
			t.Fatal(err)
		}
		if _, err := pod.ServeUDP(udpPort); err != nil {
			t.Fatal(err)
		}
	}
	local0, local1 := topo.Node.Pods[0], topo.Node.Pods[1]
	remote0, remote1 := topo.Remote.Pods[0], topo.Remote.Pods[1]
	client := topo.Clients[0]
	nodeIP := topo.Node.Addrs.V4
	node := proxier.Node{Name: "node", Addresses: []netip.Addr{nodeIP, topo.Node.Addrs.V6}}
	v := newVMProxier(t, topo.Node.NS, node, PlanOptions{
		LocalDetector: LocalDetector{CIDRs: topo.ClusterCIDR.All()},
	}, true, 1)
	v.sync(t, proxier.FullSync())

	all := func(f netns.Family) spOpt { return podEndpoints(tcpPort, f, local0, local1, remote0, remote1) }
	clusterIP := netip.MustParseAddr("10.96.0.10")
	web := vmService("web", 80, clusterIP, all(netns.V4), nodePort(30080))
	lbIP := netip.MustParseAddr("192.0.2.10")
	lb := vmService("lb", 80, netip.MustParseAddr("10.96.0.11"), all(netns.V4), lbIngress(lbIP.String(), proxier.IPModeVIP))
	sticky := vmService("sticky", 80, netip.MustParseAddr("10.96.0.12"), all(netns.V4), affinity(time.Hour))
	local := vmService("local", 80, netip.MustParseAddr("10.96.0.13"), podEndpoints(tcpPort, netns.V4, local0, remote0),
		nodePort(30081), externalLocal)
	empty := vmService("empty", 80, netip.MustParseAddr("10.96.0.14"))
	dns := vmService("dns", 53, netip.MustParseAddr("10.96.0.15"), proto(proxier.ProtocolUDP), podEndpoints(udpPort, netns.V4, remote0, remote1))
	fwIP := netip.MustParseAddr("192.0.2.20")
	fw := vmService("fw", 80, netip.MustParseAddr("10.96.0.17"), all(netns.V4), lbIngress(fwIP.String(), proxier.IPModeVIP),
		sourceRanges(netip.PrefixFrom(client.Addrs.V4, 32).String()))
	// Someone else's virtual server, on an address kproxy does not own.
	foreign := &VirtualServer{VSKey: VSKey{Addr: netip.MustParseAddr("192.0.2.99"), Protocol: proxier.ProtocolTCP, Port: 80},
		Scheduler: "wlc", Netmask: 0xffffffff}
	if err := v.k.AddVirtualServer(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	v.sync(t, proxier.FullSync())
	v.set(t, web, lb, sticky, local, empty, dns, fw)

	const timeout = 3 * time.Second
	seen := func(t *testing.T, from *netns.NS, addr netip.AddrPort, n int) map[string]int {
		t.Helper()
		out := map[string]int{}
		for range n {
			r, err := from.DialTCP(ctx, addr, timeout)
			if err != nil {
				t.Fatalf("%s -> %s: %v (%s)", from.Label, addr, err, netns.Classify(err))
			}
			out[r.Server]++
		}
		return out
	}

	t.Run("cluster IP balances across every pod", func(t *testing.T) {
		got := seen(t, local0.NS, netip.AddrPortFrom(clusterIP, 80), 8)
		if len(got) != 4 {
			t.Errorf("answers from %v, want all four pods", got)
		}
	})
	t.Run("node port from an external client", func(t *testing.T) {
		r, err := client.DialTCP(ctx, netip.AddrPortFrom(nodeIP, 30080), timeout)
		if err != nil {
			t.Fatalf("node port: %v (%s)", err, netns.Classify(err))
		}
		if r.ClientIP == client.Addrs.V4 && r.Server != local0.Label && r.Server != local1.Label {
			t.Errorf("remote endpoint %s saw the client's address: cluster policy must masquerade", r.Server)
		}
	})
	t.Run("load balancer IP", func(t *testing.T) {
		got := seen(t, client.NS, netip.AddrPortFrom(lbIP, 80), 4)
		if len(got) < 2 {
			t.Errorf("answers from %v, want several pods", got)
		}
	})
	t.Run("session affinity sticks", func(t *testing.T) {
		got := seen(t, client.NS, netip.AddrPortFrom(netip.MustParseAddr("10.96.0.12"), 80), 6)
		if len(got) != 1 {
			t.Errorf("answers from %v, want one pod", got)
		}
	})
	t.Run("externalTrafficPolicy Local: local pod only, client address kept", func(t *testing.T) {
		for range 4 {
			r, err := client.DialTCP(ctx, netip.AddrPortFrom(nodeIP, 30081), timeout)
			if err != nil {
				t.Fatalf("node port: %v (%s)", err, netns.Classify(err))
			}
			if r.Server != local0.Label || r.ClientIP != client.Addrs.V4 {
				t.Errorf("got %s seeing %s, want %s seeing the client %s", r.Server, r.ClientIP, local0.Label, client.Addrs.V4)
			}
		}
	})
	t.Run("no endpoints is refused", func(t *testing.T) {
		_, err := local1.DialTCP(ctx, netip.MustParseAddrPort("10.96.0.14:80"), timeout)
		if netns.Classify(err) != netns.Refused {
			t.Errorf("service without endpoints: %v (%s), want refused", err, netns.Classify(err))
		}
	})
	t.Run("loadBalancerSourceRanges", func(t *testing.T) {
		addr := netip.AddrPortFrom(fwIP, 80)
		if _, err := client.DialTCP(ctx, addr, timeout); err != nil {
			t.Errorf("allowed client: %v (%s)", err, netns.Classify(err))
		}
		if _, err := local0.DialTCP(ctx, addr, time.Second); netns.Classify(err) != netns.Timeout {
			t.Errorf("pod outside the source ranges: %v (%s), want dropped", err, netns.Classify(err))
		}
		if _, err := topo.Node.DialTCP(ctx, addr, time.Second); netns.Classify(err) != netns.Timeout {
			t.Errorf("node outside the source ranges: %v (%s), want dropped", err, netns.Classify(err))
		}
	})
	t.Run("UDP", func(t *testing.T) {
		r, err := local0.DialUDP(ctx, netip.MustParseAddrPort("10.96.0.15:53"), timeout)
		if err != nil || (r.Server != remote0.Label && r.Server != remote1.Label) {
			t.Errorf("UDP through the cluster IP: %v, %v", r, err)
		}
	})
	t.Run("unchanged resync writes nothing", func(t *testing.T) {
		before := v.writes()
		d := v.sync(t, proxier.FullSync())
		if w := v.writes() - before; w != 0 {
			t.Errorf("full resync of an unchanged state made %v IPVS writes", w)
		}
		t.Logf("full resync of %d service ports: %v", len(v.ports), d)
	})
	t.Run("graceful termination", func(t *testing.T) {
		gt := vmService("graceful", 80, netip.MustParseAddr("10.96.0.16"), podEndpoints(tcpPort, netns.V4, local0, local1))
		v.set(t, gt)
		addr := netip.MustParseAddrPort("10.96.0.16:80")
		conn, err := client.OpenTCP(ctx, addr, timeout)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		first, err := conn.Exchange(timeout)
		if err != nil {
			t.Fatal(err)
		}
		keep := local0
		if first.Server == local0.Label {
			keep = local1
		}
		v.set(t, vmService("graceful", 80, netip.MustParseAddr("10.96.0.16"), podEndpoints(tcpPort, netns.V4, keep)))
		if r, err := conn.Exchange(timeout); err != nil || r.Server != first.Server {
			t.Errorf("established connection after its endpoint was removed: %v, %v; want %s still answering", r, err, first.Server)
		}
		for i := range 4 {
			r, err := client.DialTCP(ctx, addr, timeout)
			if err != nil || r.Server != keep.Label {
				t.Errorf("new connection %d: %v, %v; want %s", i, r, err, keep.Label)
			}
		}
		reals, err := v.k.RealServers(ctx, VSKey{Addr: addr.Addr(), Protocol: proxier.ProtocolTCP, Port: 80})
		if err != nil || len(reals) != 2 || v.p.Draining() != 1 {
			t.Errorf("real servers while draining: %v, %v (draining %d); want the old one at weight 0", reals, err, v.p.Draining())
		}
		conn.Close()
	})
	t.Run("IPv6 cluster IP", func(t *testing.T) {
		v6 := newVMProxier(t, topo.Node.NS, node, PlanOptions{Family: proxier.IPv6}, true, 1)
		ip6 := netip.MustParseAddr("fd00:96::10")
		sp := vmService("web6", 80, ip6, podEndpoints(tcpPort, netns.V6, local0, remote0))
		v6.ports[sp.Name] = sp
		v6.sync(t, proxier.FullSync())
		got := seen(t, local1.NS, netip.AddrPortFrom(ip6, 80), 4)
		if len(got) != 2 {
			t.Errorf("IPv6 answers from %v, want both pods", got)
		}
		if err := v6.p.Cleanup(ctx); err != nil {
			t.Errorf("IPv6 Cleanup: %v", err)
		}
		// The IPv4 proxier's services are untouched.
		if _, err := local0.DialTCP(ctx, netip.AddrPortFrom(clusterIP, 80), timeout); err != nil {
			t.Errorf("IPv4 service after IPv6 cleanup: %v", err)
		}
	})
	t.Run("cleanup", func(t *testing.T) {
		if err := v.p.Cleanup(ctx); err != nil {
			t.Fatalf("Cleanup: %v", err)
		}
		if vss, _ := v.k.VirtualServers(ctx, proxier.IPv4); len(vss) != 1 || vss[0].VSKey != foreign.VSKey {
			t.Errorf("virtual servers after Cleanup: %v, want only the foreign one", vss)
		}
		if _, exists, _ := v.k.DeviceAddresses(ctx, proxier.IPv4); exists {
			t.Errorf("kube-ipvs0 left behind")
		}
	})
}

// addEndpointRoutes gives bigState's endpoints (10.244.0.0/15) and replaceEndpoint's
// (10.250.0.0/16) a route through a dummy link: the kernel refuses real servers it
// has no route to.
func addEndpointRoutes(t *testing.T, ns *netns.NS) {
	t.Helper()
	err := ns.Netlink(func(h *netlink.Handle) error {
		link := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eps0"}}
		if err := h.LinkAdd(link); err != nil {
			return err
		}
		for _, p := range []string{"10.244.0.1/15", "10.250.0.254/16"} {
			a, err := netlink.ParseAddr(p)
			if err != nil {
				return err
			}
			if err := h.AddrAdd(link, a); err != nil {
				return err
			}
		}
		return h.LinkSetUp(link)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestVMColdProgramming measures how long the proxier takes to program 1,000 and
// 10,000 Services with 10 endpoints each into an empty namespace on a real kernel
// (under TCG emulation, so slower than hardware), then an unchanged resync and a
// one-endpoint change.
func TestVMColdProgramming(t *testing.T) {
	vmSetup(t)
	for _, n := range []int{1_000, 10_000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			ns := netns.NewNS(t, fmt.Sprintf("cold%d", n))
			addEndpointRoutes(t, ns)
			s := bigState(n)
			v := newVMProxier(t, ns, s.Node, PlanOptions{}, true, 2)
			var ms runtime.MemStats
			start := time.Now()
			if err := v.p.Sync(context.Background(), s, proxier.FullSync()); err != nil {
				t.Fatal(err)
			}
			cold := time.Since(start)
			writes := v.writes()
			start = time.Now()
			if _, err := ReadSnapshot(context.Background(), v.k, proxier.IPv4, nil); err != nil {
				t.Fatal(err)
			}
			read := time.Since(start)
			start = time.Now()
			if err := v.p.Sync(context.Background(), s, proxier.FullSync()); err != nil {
				t.Fatal(err)
			}
			resync := time.Since(start)
			if w := v.writes() - writes; w != 0 {
				t.Errorf("unchanged resync made %v writes", w)
			}
			next, cs := replaceEndpoint(s, n/2, netip.MustParseAddr("10.250.0.1"))
			start = time.Now()
			if err := v.p.Sync(context.Background(), next, cs); err != nil {
				t.Fatal(err)
			}
			partial := time.Since(start)
			runtime.ReadMemStats(&ms)
			t.Logf("%d services x 10 endpoints: cold %v (%v netlink writes), unchanged full resync %v (reading the kernel back alone %v), one-endpoint partial sync %v, heap %d MiB",
				n, cold, writes, resync, read, partial, ms.HeapAlloc>>20)
			if err := v.p.Cleanup(context.Background()); err != nil {
				t.Errorf("Cleanup: %v", err)
			}
		})
	}
}
