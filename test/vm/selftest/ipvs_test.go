//go:build vmtest

package selftest

import (
	"net"
	"syscall"
	"testing"

	"github.com/moby/ipvs"
	"github.com/vishvananda/netlink"

	"github.com/kproxy/kproxy/test/vm"
)

// TestKubeIPVSDummy creates the dummy link kube-proxy's IPVS mode binds service IPs to.
func TestKubeIPVSDummy(t *testing.T) {
	vm.SkipUnlessInVM(t)
	link := addDummy(t, "kube-ipvs0", "10.96.0.1/32")
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		t.Fatalf("list addresses: %v", err)
	}
	if len(addrs) != 1 || !addrs[0].IP.Equal(net.ParseIP("10.96.0.1")) {
		t.Fatalf("kube-ipvs0 addresses = %v, want [10.96.0.1/32]", addrs)
	}
}

// TestVirtualServerReadBack programs a virtual server with two real servers, reads them back,
// and switches it through every scheduler kube-proxy accepts.
func TestVirtualServerReadBack(t *testing.T) {
	vm.SkipUnlessInVM(t)
	// Real servers need a route, or the kernel rejects them with EINVAL.
	addDummy(t, "rs0", "10.250.0.1/24")

	h, err := ipvs.New("")
	if err != nil {
		t.Fatalf("open IPVS netlink: %v", err)
	}
	defer h.Close()
	svc := &ipvs.Service{
		Address:       net.ParseIP("10.96.0.20").To4(),
		Protocol:      syscall.IPPROTO_TCP,
		Port:          80,
		SchedName:     ipvs.RoundRobin,
		AddressFamily: syscall.AF_INET,
		Netmask:       0xffffffff,
	}
	if err := h.NewService(svc); err != nil {
		t.Fatalf("add virtual server: %v", err)
	}
	t.Cleanup(func() { _ = h.DelService(svc) })
	want := map[string]int{"10.250.0.2": 1, "10.250.0.3": 2}
	for ip, weight := range want {
		d := &ipvs.Destination{Address: net.ParseIP(ip).To4(), Port: 8080, Weight: weight,
			AddressFamily: syscall.AF_INET, ConnectionFlags: ipvs.ConnectionFlagMasq}
		if err := h.NewDestination(svc, d); err != nil {
			t.Fatalf("add real server %s: %v", ip, err)
		}
	}

	got, err := h.GetService(svc)
	if err != nil {
		t.Fatalf("read virtual server back: %v", err)
	}
	if !got.Address.Equal(svc.Address) || got.Port != 80 || got.Protocol != syscall.IPPROTO_TCP || got.SchedName != "rr" {
		t.Fatalf("virtual server read back as %+v", got)
	}
	dests, err := h.GetDestinations(svc)
	if err != nil {
		t.Fatalf("read real servers back: %v", err)
	}
	if len(dests) != len(want) {
		t.Fatalf("got %d real servers, want %d: %+v", len(dests), len(want), dests)
	}
	for _, d := range dests {
		w, ok := want[d.Address.String()]
		if !ok || d.Port != 8080 || d.Weight != w || d.ConnectionFlags&ipvs.ConnectionFlagFwdMask != ipvs.ConnectionFlagMasq {
			t.Errorf("unexpected real server %+v", d)
		}
	}

	for _, sched := range []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "sh", "dh", "sed", "nq", "mh"} {
		svc.SchedName = sched
		if err := h.UpdateService(svc); err != nil {
			t.Errorf("scheduler %s: %v", sched, err)
			continue
		}
		got, err := h.GetService(svc)
		if err != nil {
			t.Fatalf("read back after scheduler %s: %v", sched, err)
		}
		if got.SchedName != sched {
			t.Errorf("scheduler read back as %q, want %q", got.SchedName, sched)
		}
	}
}

// TestClusterIPTraffic sends real TCP connections from the VM's root namespace through an IPVS
// ClusterIP (NAT mode, round robin) to servers in two pod namespaces.
func TestClusterIPTraffic(t *testing.T) {
	vm.SkipUnlessInVM(t)
	const clusterIP = "10.96.0.10"
	pods := []*pod{
		newPod(t, podOptions{Name: "pod1", Subnet: "10.244.1", Port: 8080}),
		newPod(t, podOptions{Name: "pod2", Subnet: "10.244.2", Port: 8080}),
	}
	addDummy(t, "kube-ipvs0", clusterIP+"/32")

	h, err := ipvs.New("")
	if err != nil {
		t.Fatalf("open IPVS netlink: %v", err)
	}
	defer h.Close()
	svc := &ipvs.Service{
		Address:       net.ParseIP(clusterIP).To4(),
		Protocol:      syscall.IPPROTO_TCP,
		Port:          80,
		SchedName:     ipvs.RoundRobin,
		AddressFamily: syscall.AF_INET,
		Netmask:       0xffffffff,
	}
	if err := h.NewService(svc); err != nil {
		t.Fatalf("add virtual server: %v", err)
	}
	t.Cleanup(func() { _ = h.DelService(svc) })
	for _, p := range pods {
		d := &ipvs.Destination{Address: p.ip, Port: 8080, Weight: 1,
			AddressFamily: syscall.AF_INET, ConnectionFlags: ipvs.ConnectionFlagMasq}
		if err := h.NewDestination(svc, d); err != nil {
			t.Fatalf("add real server %s: %v", p.ip, err)
		}
	}

	// Each pod answers directly, proving the namespaces are wired before IPVS is involved.
	for _, p := range pods {
		got, err := ask(net.JoinHostPort(p.ip.String(), "8080"))
		if err != nil || got != p.name {
			t.Fatalf("direct connection to %s: got %q, %v", p.name, got, err)
		}
	}

	seen := map[string]int{}
	const tries = 6
	for i := 0; i < tries; i++ {
		got, err := ask(net.JoinHostPort(clusterIP, "80"))
		if err != nil {
			t.Fatalf("connection %d through ClusterIP: %v", i, err)
		}
		seen[got]++
	}
	t.Logf("answers through %s:80: %v", clusterIP, seen)
	for _, p := range pods {
		if seen[p.name] != tries/len(pods) {
			t.Errorf("round robin: %s answered %d of %d connections, want %d", p.name, seen[p.name], tries, tries/len(pods))
		}
	}

	dests, err := h.GetDestinations(svc)
	if err != nil {
		t.Fatalf("read real servers back: %v", err)
	}
	// The byte and packet counters lag behind (a kernel estimator folds them in every two
	// seconds); the connection table is current, and closed connections linger in it.
	for _, d := range dests {
		if n := d.ActiveConnections + d.InactiveConnections; n != tries/len(pods) {
			t.Errorf("IPVS tracks %d connections to real server %s, want %d", n, d.Address, tries/len(pods))
		}
	}
}
