package iptables

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/proxier/conntrack"
	"github.com/kproxy/kproxy/test/netns"
)

// TestStaleUDPConntrackE2E sends real datagrams from a client namespace to a UDP
// service through the node namespace, over one long-lived socket (one conntrack
// flow), and moves the service to another pod. Without conntrack cleanup the flow
// keeps going to the old pod; with it the next datagram reaches the new one.
func TestStaleUDPConntrackE2E(t *testing.T) {
	requireBackend(t, BackendNFT)
	topo := netns.New(t, netns.Spec{LocalPods: 2, Clients: 1})
	ctx := context.Background()
	pod0, pod1 := topo.Node.Pods[0], topo.Node.Pods[1]
	for _, p := range []*netns.Pod{pod0, pod1} {
		if _, err := p.ServeUDP(5353); err != nil {
			t.Fatal(err)
		}
	}
	k, err := NewExecKernel(ctx, ExecOptions{Backend: BackendNFT, Netns: topo.Node.Path()})
	if err != nil {
		t.Fatal(err)
	}
	sets, err := NewNetlinkIPSets(NetlinkIPSetOptions{Netns: topo.Node.Path()})
	if err != nil {
		t.Fatal(err)
	}
	defer sets.Close()
	ct, err := conntrack.NewNetlink(conntrack.NetlinkOptions{Netns: topo.Node.Path()})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	p, err := New(ctx, Options{Family: IPv4, Kernel: k, IPSets: sets, Conntrack: ct,
		Render: RenderOptions{Family: IPv4, LocalDetector: LocalDetector{Mode: LocalModeClusterCIDR,
			CIDRs: []netip.Prefix{topo.ClusterCIDR.V4}}}})
	if err != nil {
		t.Fatal(err)
	}
	node := proxier.Node{Name: "node", Addresses: []netip.Addr{topo.Node.V4}, PodCIDRs: []netip.Prefix{topo.Node.PodCIDR.V4}}
	vip := netip.MustParseAddr("172.30.0.53")
	service := func(pod *netns.Pod) *proxier.ServicePort {
		return &proxier.ServicePort{
			Name:       proxier.ServicePortName{ServiceName: proxier.ServiceName{Namespace: "default", Name: "dns"}, Port: "dns", Protocol: proxier.ProtocolUDP},
			ClusterIPs: []netip.Addr{vip},
			Port:       53,
			Endpoints: []proxier.Endpoint{{Addr: pod.V4, Port: 5353, Ready: true, Serving: true,
				NodeName: "node", Local: true}},
		}
	}
	sync := func(sp *proxier.ServicePort, c proxier.ChangeSet) {
		t.Helper()
		if err := p.Sync(ctx, proxier.NewState(node, sp), c); err != nil {
			t.Fatal(err)
		}
	}

	conn, err := topo.Clients[0].Dial(ctx, nil, "udp", netip.AddrPortFrom(vip, 53).String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ask := func() string {
		t.Helper()
		var lastErr error
		buf := make([]byte, 512)
		for try := 0; try < 3; try++ { // UDP: retry a lost datagram, same socket
			if _, err := conn.Write([]byte("probe\n")); err != nil {
				t.Fatal(err)
			}
			conn.SetReadDeadline(time.Now().Add(time.Second))
			n, err := conn.Read(buf)
			if err == nil {
				rep, err := netns.ParseReply(strings.TrimSpace(string(buf[:n])))
				if err != nil {
					t.Fatal(err)
				}
				return rep.Server
			}
			lastErr = err
		}
		t.Fatalf("no answer from the service: %v", lastErr)
		return ""
	}

	// Without cleanup the flow sticks to the old endpoint.
	cleaner := p.conntrack
	p.conntrack = nil
	sp0 := service(pod0)
	sync(sp0, proxier.FullSync())
	if got := ask(); got != pod0.Label {
		t.Fatalf("first datagram answered by %s, want %s", got, pod0.Label)
	}
	sp1 := service(pod1)
	sync(sp1, changed(sp1))
	if got := ask(); got != pod0.Label {
		t.Fatalf("without conntrack cleanup the flow moved to %s; the test cannot show staleness", got)
	}

	// A full sync with cleanup reconciles the flow table: the next datagram of the
	// same socket reaches the current endpoint.
	p.conntrack = cleaner
	sync(sp1, proxier.FullSync())
	if st := p.LastSync(); st.ConntrackCleared < 1 {
		t.Errorf("full sync cleared %d flows", st.ConntrackCleared)
	}
	if got := ask(); got != pod1.Label {
		t.Fatalf("after the full sync the flow went to %s, want %s", got, pod1.Label)
	}

	// A partial sync that moves the endpoint cleans up at once too.
	sp0 = service(pod0)
	sync(sp0, changed(sp0))
	if st := p.LastSync(); st.Full || st.ConntrackCleared != 1 {
		t.Errorf("partial sync: %+v", st)
	}
	if got := ask(); got != pod0.Label {
		t.Fatalf("after the partial sync the flow went to %s, want %s", got, pod0.Label)
	}
}
