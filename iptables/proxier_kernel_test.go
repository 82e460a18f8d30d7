package iptables

import (
	"context"
	"strings"
	"testing"

	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/proxier/conntrack"
	"github.com/kproxy/kproxy/proxier/metrics"
)

// kernelForeign is what the node holds before kproxy starts: a Docker-style chain, an
// administrator's INPUT rule and kubelet's chains.
const kernelForeign = `*nat
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A DOCKER -i docker0 -j RETURN
COMMIT
*filter
:KUBE-FIREWALL - [0:0]
-A INPUT -s 203.0.113.0/24 -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -j KUBE-FIREWALL
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
COMMIT
*mangle
:KUBE-KUBELET-CANARY - [0:0]
COMMIT
`

// TestProxierKernel syncs the real renderer's rules into iptables (both backends)
// inside a fresh network namespace and checks what iptables-save shows.
func TestProxierKernel(t *testing.T) {
	for _, b := range []Backend{BackendNFT, BackendLegacy} {
		t.Run(string(b), func(t *testing.T) {
			requireBackend(t, b)
			testProxierKernel(t, b)
		})
	}
}

func testProxierKernel(t *testing.T, b Backend) {
	ctx := context.Background()
	ns := newTestNetns(t)
	k := newTestExec(t, b, ns, 5)
	if err := k.Restore(ctx, IPv4, []byte(kernelForeign), RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	inNetns(t, ns, "", "ipset", "create", "foreign-set", "hash:ip")
	inNetns(t, ns, "", "ipset", "add", "foreign-set", "192.0.2.1")
	save := func() string {
		out, err := k.Save(ctx, IPv4, syncTables...)
		if err != nil {
			t.Fatal(err)
		}
		return normalizeSave(string(out))
	}
	initial := save()
	initialSets := inNetns(t, ns, "", "ipset", "save")

	sets, err := NewNetlinkIPSets(NetlinkIPSetOptions{Netns: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer sets.Close()
	ct, err := conntrack.NewNetlink(conntrack.NetlinkOptions{Netns: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	feat, err := k.Features(ctx, IPv4)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(ctx, Options{
		Family: IPv4, Kernel: k, IPSets: sets, Conntrack: ct, Metrics: metrics.New(),
		Render: RenderOptions{Family: IPv4, LocalDetector: clusterCIDRs, RandomFully: feat.RandomFully},
	})
	if err != nil {
		t.Fatal(err)
	}
	svcs := renderedServices()
	sync := func(s *proxier.State, c proxier.ChangeSet) SyncStats {
		t.Helper()
		if err := p.Sync(ctx, s, c); err != nil {
			t.Fatal(err)
		}
		return p.LastSync()
	}

	st := sync(proxier.NewState(nodeA, svcs...), proxier.FullSync())
	t.Logf("first sync: %d chains, %d jumps, %d bytes, restore %v, total %v", st.ChainsWritten, st.JumpsAdded, st.PayloadBytes, st.Restore, st.Total)
	text := save()
	for _, want := range []string{":KUBE-SERVICES - [0:0]", ":KUBE-PROXY-CANARY - [0:0]",
		"-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
		"default/web:http cluster IP", "--to-destination 10.244.2.2:8080"} {
		if !strings.Contains(text, want) {
			t.Errorf("iptables-save lacks %q:\n%s", want, text)
		}
	}
	if got := inNetns(t, ns, "", "ipset", "list", "-n"); !strings.Contains(got, "KUBE-LOOP-BACK") {
		t.Errorf("loopback set missing: %s", got)
	}

	// The kernel prints the rules exactly as rendered: a full sync finds nothing to do.
	st = sync(proxier.NewState(nodeA, svcs...), proxier.FullSync())
	if st.Restores != 0 || st.JumpsAdded != 0 {
		text, _ := k.Save(ctx, IPv4, syncTables...)
		saved, _ := ParseSaved(text)
		pl := planFull(p.applied, saved)
		for _, tp := range pl.tables {
			for _, c := range tp.write {
				t.Errorf("%s %s differs:\n kernel %q\n wanted %q", tp.table, c.Name, saved.Table(tp.table).Chains[c.Name], c.Rules)
			}
		}
		t.Fatalf("second full sync rewrote things: %+v", st)
	}
	t.Logf("no-op full sync: read %d lines in %v, ipsets %v, conntrack %v, total %v", st.SavedLines, st.Read, st.IPSets, st.Conntrack, st.Total)

	// Partial: web loses an endpoint.
	svcs[0] = svc("default/web:http", "172.30.0.1", endpoints("10.244.1.2:8080@node-a"))
	st = sync(proxier.NewState(nodeA, svcs...), changed(svcs[0]))
	if st.Full || st.Restores != 1 {
		t.Errorf("partial sync: %+v", st)
	}
	t.Logf("partial sync: %d bytes, restore %v, total %v", st.PayloadBytes, st.Restore, st.Total)
	if text := save(); strings.Contains(text, "10.244.2.2:8080") {
		t.Errorf("removed endpoint still in the rules")
	}
	if st := sync(proxier.NewState(nodeA, svcs...), proxier.FullSync()); st.Restores != 0 {
		t.Errorf("full sync after the partial one restored")
	}

	// Somebody empties our chains and removes a jump (a firewall reload would flush
	// everything; foreign rules are spared here so Cleanup can be checked below).
	ipt := binaryName(b, IPv4, "")
	inNetns(t, ns, "", ipt, "-t", "nat", "-F", "KUBE-SERVICES")
	inNetns(t, ns, "", ipt, "-t", "nat", "-D", "PREROUTING", "-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES")
	inNetns(t, ns, "", ipt, "-t", "mangle", "-X", "KUBE-PROXY-CANARY")
	st = sync(proxier.NewState(nodeA, svcs...), proxier.FullSync())
	if st.Restores != 1 || st.ChainsWritten != 2 || st.JumpsAdded != 1 {
		t.Errorf("flush not repaired: %+v", st)
	}
	if st := sync(proxier.NewState(nodeA, svcs...), proxier.FullSync()); st.Restores != 0 {
		t.Errorf("repair did not converge: %+v", st)
	}

	if err := p.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if got := save(); got != initial {
		t.Errorf("after Cleanup:\n%s\nwant exactly the initial rules:\n%s", got, initial)
	}
	if got := inNetns(t, ns, "", "ipset", "save"); got != initialSets {
		t.Errorf("ipsets after Cleanup:\n%s\nwant\n%s", got, initialSets)
	}
	if err := p.Cleanup(ctx); err != nil {
		t.Fatalf("second Cleanup: %v", err)
	}
}
