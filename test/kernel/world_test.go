package kernel

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/kproxy/kproxy/iptables"
	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/test/netns"
)

// Ports the pods serve on and the services expose.
const (
	podPort uint16 = 8080
	svcPort uint16 = 80
)

// Names of the two nodes as the model knows them.
const (
	nodeName   = "node"
	remoteName = "remote"
)

// backends are the two iptables variants every kernel test covers.
var backends = []iptables.Backend{iptables.BackendNFT, iptables.BackendLegacy}

// world is one topology (IPv4 only: the faults and the coexistence rules are the same
// for IPv6, which test/e2e covers) whose pods answer TCP on podPort, for one backend.
type world struct {
	topo    *netns.Topology
	backend iptables.Backend
	node    proxier.Node
}

// newWorld builds a topology with two local pods, two remote pods and one client, and
// fails the test when the backend's binaries are missing: as root the package only
// skips for lack of privileges, never for a missing tool.
func newWorld(t *testing.T, b iptables.Backend) *world {
	t.Helper()
	netns.RequireRoot(t)
	requireTools(t, "iptables-"+string(b), "iptables-"+string(b)+"-save", "iptables-"+string(b)+"-restore", "ipset")
	topo := netns.New(t, netns.Spec{LocalPods: 2, RemotePods: 2, Clients: 1})
	if !topo.BridgeNetfilter {
		t.Fatal("bridge netfilter is not available (br_netfilter not loaded): pod-to-service traffic on one bridge would bypass iptables")
	}
	for _, p := range topo.Pods() {
		if _, err := p.ServeTCP(podPort); err != nil {
			t.Fatal(err)
		}
	}
	return &world{
		topo:    topo,
		backend: b,
		node: proxier.Node{
			Name:      nodeName,
			Addresses: []netip.Addr{topo.Node.IP(netns.V4)},
			PodCIDRs:  []netip.Prefix{topo.Node.PodCIDR.Prefix(netns.V4)},
		},
	}
}

// requireTools fails the test when a tool hack/install-deps.sh installs is missing.
func requireTools(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Fatalf("%s is not installed: apt-get install -y --no-install-recommends iptables ipset conntrack", n)
		}
	}
}

// Shorthands for the topology's pods and client.
func (w *world) local(i int) *netns.Pod  { return w.topo.Node.Pods[i] }
func (w *world) remote(i int) *netns.Pod { return w.topo.Remote.Pods[i] }
func (w *world) client() *netns.Host     { return w.topo.Clients[0] }

// renderOptions are the node's render settings, as the command would derive them from
// --cluster-cidr.
func (w *world) renderOptions() iptables.RenderOptions {
	return iptables.RenderOptions{
		LocalDetector: iptables.LocalDetector{
			Mode:  iptables.LocalModeClusterCIDR,
			CIDRs: []netip.Prefix{w.topo.ClusterCIDR.Prefix(netns.V4)},
		},
	}
}

// iptables runs the backend's iptables command in the node namespace, as another
// program on the node would.
func (w *world) iptables(t *testing.T, table string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append([]string{"-w", "5", "-t", table}, args...)
	if _, err := w.topo.Node.Exec(ctx, "iptables-"+string(w.backend), full...); err != nil {
		t.Fatal(err)
	}
}

// svc describes one service port: index n picks its cluster IP (10.96.0.n) and node
// port (30000+n).
type svc struct {
	n         int
	endpoints []*netns.Pod
	nodePort  bool
}

// servicePort is the model of s, with IPv4 endpoints.
func (w *world) servicePort(s svc) *proxier.ServicePort {
	sp := &proxier.ServicePort{
		Name: proxier.ServicePortName{
			ServiceName: proxier.ServiceName{Namespace: "kernel", Name: fmt.Sprintf("svc-%d", s.n)},
			Port:        "p",
			Protocol:    proxier.ProtocolTCP,
		},
		ClusterIPs: []netip.Addr{clusterIP(s.n)},
		Port:       svcPort,
	}
	if s.nodePort {
		sp.NodePort = nodePort(s.n)
	}
	for _, p := range s.endpoints {
		sp.Endpoints = append(sp.Endpoints, w.endpoint(p))
	}
	return sp
}

// endpoint is pod p as a ready endpoint.
func (w *world) endpoint(p *netns.Pod) proxier.Endpoint {
	local := p.Node == w.topo.Node
	name := remoteName
	if local {
		name = nodeName
	}
	return proxier.Endpoint{Addr: p.IP(netns.V4), Port: podPort, Ready: true, Serving: true, NodeName: name, Local: local}
}

// clusterIP exists only as a DNAT target in the node namespace: pods and the client
// route everything through the node, so probes never leave the topology.
func clusterIP(n int) netip.Addr { return netip.AddrFrom4([4]byte{10, 96, 0, byte(n)}) }

func nodePort(n int) uint16 { return 30000 + uint16(n) }

func clusterAddr(n int) netip.AddrPort { return netip.AddrPortFrom(clusterIP(n), svcPort) }

func (w *world) nodePortAddr(n int) netip.AddrPort {
	return w.topo.Node.AddrPort(netns.V4, nodePort(n))
}
