package iptables

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/proxier/conntrack"
)

// TestProxierKernelScale measures cold start, the no-op periodic resync and a
// one-endpoint partial sync against the real kernel at scale. It is opt-in
// (KPROXY_SCALE_SERVICES=10000) because it takes tens of seconds.
func TestProxierKernelScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("KPROXY_SCALE_SERVICES"))
	if n <= 0 {
		t.Skip("set KPROXY_SCALE_SERVICES=<n> to run the scale measurement")
	}
	for _, b := range []Backend{BackendNFT, BackendLegacy} {
		t.Run(string(b), func(t *testing.T) {
			requireBackend(t, b)
			ctx := context.Background()
			ns := newTestNetns(t)
			k := newTestExec(t, b, ns, 5)
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
			p, err := New(ctx, Options{Family: IPv4, Kernel: k, IPSets: sets, Conntrack: ct,
				Render: RenderOptions{Family: IPv4, LocalDetector: clusterCIDRs}})
			if err != nil {
				t.Fatal(err)
			}
			svcs := syncBenchServices(n, 10)
			run := func(name string, s *proxier.State, c proxier.ChangeSet) SyncStats {
				start := time.Now()
				if err := p.Sync(ctx, s, c); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				st := p.LastSync()
				t.Logf("%s: %v (render %v, read %v of %d lines, ipsets %v, restore %v of %d bytes, conntrack %v)",
					name, time.Since(start), st.Render, st.Read, st.SavedLines, st.IPSets, st.Restore, st.PayloadBytes, st.Conntrack)
				return st
			}
			run("first sync", proxier.NewState(nodeA, svcs...), proxier.FullSync())
			if st := run("no-op full sync", proxier.NewState(nodeA, svcs...), proxier.FullSync()); st.Restores != 0 {
				t.Errorf("no-op full sync restored")
			}
			for i := 0; i < 3; i++ {
				alt := *svcs[n/2] // a new pointer: the renderer skips unchanged ones
				alt.Endpoints = append([]proxier.Endpoint(nil), alt.Endpoints...)
				alt.Endpoints[3].Ready = !alt.Endpoints[3].Ready
				alt.Endpoints[3].Serving = alt.Endpoints[3].Ready
				svcs[n/2] = &alt
				if st := run("one-endpoint partial sync", proxier.NewState(nodeA, svcs...), changed(&alt)); st.Restores != 1 {
					t.Errorf("partial sync did not restore")
				}
			}
			if err := p.Cleanup(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}
