package iptables

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/proxier/conntrack"
)

// syncBenchServices returns n service ports with eps endpoints each, every tenth UDP with
// a node port, every fifth with an endpoint on this node.
func syncBenchServices(n, eps int) []*proxier.ServicePort {
	out := make([]*proxier.ServicePort, n)
	for i := range out {
		sp := &proxier.ServicePort{
			Name: proxier.ServicePortName{ServiceName: proxier.ServiceName{Namespace: "bench", Name: fmt.Sprintf("svc-%05d", i)},
				Port: "p", Protocol: proxier.ProtocolTCP},
			ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{172, 30, byte(i >> 8), byte(i)})},
			Port:       80,
		}
		if i%10 == 9 {
			sp.Name.Protocol, sp.NodePort = proxier.ProtocolUDP, uint16(30000+i%2700)
		}
		for j := 0; j < eps; j++ {
			sp.Endpoints = append(sp.Endpoints, proxier.Endpoint{
				Addr: netip.AddrFrom4([4]byte{10, byte(128 + i>>8), byte(i), byte(j + 1)}), Port: 8080,
				Ready: true, Serving: true, NodeName: "node-b", Local: i%5 == 0 && j == 0,
			})
		}
		out[i] = sp
	}
	return out
}

func newBenchProxier(b *testing.B) (*Proxier, *Fake) {
	k := NewFake(FakeOptions{})
	p, err := New(context.Background(), Options{
		Family: IPv4, Kernel: k, IPSets: NewFakeIPSets(), Conntrack: conntrack.NewFake(),
		Render: RenderOptions{Family: IPv4, LocalDetector: clusterCIDRs},
	})
	if err != nil {
		b.Fatal(err)
	}
	return p, k
}

var benchSizes = []int{1000, 5000, 10000}

// BenchmarkSyncFirst is a cold start: an empty kernel and a full sync.
func BenchmarkSyncFirst(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			state := proxier.NewState(nodeA, syncBenchServices(n, 10)...)
			var st SyncStats
			for b.Loop() {
				b.StopTimer()
				p, _ := newBenchProxier(b)
				b.StartTimer()
				if err := p.Sync(context.Background(), state, proxier.FullSync()); err != nil {
					b.Fatal(err)
				}
				st = p.LastSync()
			}
			b.ReportMetric(float64(st.PayloadBytes), "payload-bytes")
			b.ReportMetric(float64(st.ChainsWritten), "chains")
			reportPhases(b, st)
		})
	}
}

// BenchmarkSyncFullNoop is the periodic resync when nothing changed: read back,
// compare, write nothing.
func BenchmarkSyncFullNoop(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			state := proxier.NewState(nodeA, syncBenchServices(n, 10)...)
			p, k := newBenchProxier(b)
			if err := p.Sync(context.Background(), state, proxier.FullSync()); err != nil {
				b.Fatal(err)
			}
			k.ResetStats()
			for b.Loop() {
				if err := p.Sync(context.Background(), state, proxier.FullSync()); err != nil {
					b.Fatal(err)
				}
			}
			if n := k.Stats().RestoreCalls; n != 0 {
				b.Fatalf("no-op full syncs restored %d times", n)
			}
			b.ReportMetric(float64(p.LastSync().SavedLines), "saved-lines")
			reportPhases(b, p.LastSync())
		})
	}
}

// BenchmarkSyncPartial changes one endpoint of one service per iteration.
func BenchmarkSyncPartial(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			svcs := syncBenchServices(n, 10)
			p, _ := newBenchProxier(b)
			if err := p.Sync(context.Background(), proxier.NewState(nodeA, svcs...), proxier.FullSync()); err != nil {
				b.Fatal(err)
			}
			orig := svcs[n/2]
			alt := *orig
			alt.Endpoints = append([]proxier.Endpoint(nil), orig.Endpoints...)
			alt.Endpoints[3].Ready, alt.Endpoints[3].Serving = false, false
			states := [2]*proxier.State{}
			svcs[n/2] = &alt
			states[0] = proxier.NewState(nodeA, svcs...)
			svcs[n/2] = orig
			states[1] = proxier.NewState(nodeA, svcs...)
			c := changed(orig)
			i := 0
			for b.Loop() {
				if err := p.Sync(context.Background(), states[i%2], c); err != nil {
					b.Fatal(err)
				}
				i++
			}
			st := p.LastSync()
			if st.Full || st.Restores != 1 {
				b.Fatalf("not a one-restore partial sync: %+v", st)
			}
			b.ReportMetric(float64(st.PayloadBytes), "payload-bytes")
			reportPhases(b, st)
		})
	}
}

// reportPhases reports where the last sync spent its time.
func reportPhases(b *testing.B, st SyncStats) {
	b.ReportMetric(float64(st.Render.Microseconds()), "render-µs")
	b.ReportMetric(float64(st.Read.Microseconds()), "read-µs")
	b.ReportMetric(float64(st.Restore.Microseconds()), "restore-µs")
	b.ReportMetric(float64((st.Total - st.Render - st.Read - st.Restore).Microseconds()), "other-µs")
}
