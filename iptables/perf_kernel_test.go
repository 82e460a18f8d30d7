package iptables

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kproxy/kproxy/proxier"
)

// Real-kernel benchmarks of the proxier at scale, in throw-away network namespaces,
// on both backends. They are opt-in because a run takes minutes:
//
//	KPROXY_KERNEL_BENCH=1000,5000,10000 go test ./iptables -run '^$' \
//	    -bench 'BenchmarkKernel(ColdSync|OneChange|NoopFullSync)' -benchtime 3x
//
// KPROXY_KERNEL_BENCH lists the service counts (10 endpoints each, shaped like
// syncBenchServices); KPROXY_KERNEL_BACKENDS=nft or legacy restricts the backends.
// Each reports seconds per sync and where the time went (render, read, restore).

// perfSizes returns the service counts asked for, skipping the benchmark when none.
func perfSizes(b *testing.B) []int {
	env := os.Getenv("KPROXY_KERNEL_BENCH")
	if env == "" {
		b.Skip("set KPROXY_KERNEL_BENCH=1000,5000,10000 to run the real-kernel benchmarks")
	}
	var out []int
	for _, f := range strings.Split(env, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			b.Fatalf("KPROXY_KERNEL_BENCH: bad size %q", f)
		}
		out = append(out, n)
	}
	return out
}

func perfBackends() []Backend {
	switch os.Getenv("KPROXY_KERNEL_BACKENDS") {
	case "nft":
		return []Backend{BackendNFT}
	case "legacy":
		return []Backend{BackendLegacy}
	}
	return []Backend{BackendNFT, BackendLegacy}
}

// perfNetns creates a namespace named kpf-<random> and returns it with its removal.
func perfNetns(b *testing.B) (string, func()) {
	b.Helper()
	requireRoot(b)
	buf := make([]byte, 5)
	if _, err := rand.Read(buf); err != nil {
		b.Fatal(err)
	}
	name := "kpf-" + hex.EncodeToString(buf)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		b.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	return name, func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			b.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	}
}

// perfProxier builds a proxier with real ipsets (no conntrack cleaner: the flow
// table is empty anyway) in a fresh namespace.
func perfProxier(b *testing.B, backend Backend, readBackEvery int) (*Proxier, func()) {
	b.Helper()
	ns, del := perfNetns(b)
	k, err := NewExecKernel(context.Background(), ExecOptions{Backend: backend, Netns: ns, WaitSeconds: 5})
	if err != nil {
		del()
		b.Fatal(err)
	}
	sets, err := NewNetlinkIPSets(NetlinkIPSetOptions{Netns: ns})
	if err != nil {
		del()
		b.Fatal(err)
	}
	opts := Options{Family: IPv4, Kernel: k, IPSets: sets,
		Render: RenderOptions{Family: IPv4, LocalDetector: clusterCIDRs}}
	perfReadBackEvery(&opts, readBackEvery)
	p, err := New(context.Background(), opts)
	if err != nil {
		sets.Close()
		del()
		b.Fatal(err)
	}
	return p, func() { sets.Close(); del() }
}

// perfReport reports the mean of the timed syncs and the phases of the last one.
func perfReport(b *testing.B, total time.Duration, n int, st SyncStats) {
	b.ReportMetric(total.Seconds()/float64(n), "s/sync")
	b.ReportMetric(float64(st.Render.Milliseconds()), "render-ms")
	b.ReportMetric(float64(st.Read.Milliseconds()), "read-ms")
	b.ReportMetric(float64(st.Restore.Milliseconds()), "restore-ms")
	b.ReportMetric(float64(st.PayloadBytes), "payload-bytes")
}

// BenchmarkKernelColdSync is a cold start: an empty namespace, one full sync of n
// services × 10 endpoints. The namespace is created and deleted outside the timing.
func BenchmarkKernelColdSync(b *testing.B) {
	sizes := perfSizes(b)
	for _, backend := range perfBackends() {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/services=%d", backend, n), func(b *testing.B) {
				requireBackend(b, backend)
				state := proxier.NewState(nodeA, syncBenchServices(n, 10)...)
				state.ServicePorts()
				var total time.Duration
				var st SyncStats
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					p, done := perfProxier(b, backend, 0)
					b.StartTimer()
					start := time.Now()
					err := p.Sync(context.Background(), state, proxier.FullSync())
					total += time.Since(start)
					st = p.LastSync()
					b.StopTimer()
					done()
					b.StartTimer()
					if err != nil {
						b.Fatal(err)
					}
				}
				perfReport(b, total, b.N, st)
			})
		}
	}
}

// perfLoaded returns a proxier whose namespace holds n services, and two states
// that differ in one endpoint of one service, with the change set between them.
func perfLoaded(b *testing.B, backend Backend, n, readBackEvery int) (*Proxier, [2]*proxier.State, proxier.ChangeSet, func()) {
	svcs := syncBenchServices(n, 10)
	p, done := perfProxier(b, backend, readBackEvery)
	if err := p.Sync(context.Background(), proxier.NewState(nodeA, svcs...), proxier.FullSync()); err != nil {
		done()
		b.Fatal(err)
	}
	orig := svcs[n/2]
	alt := *orig
	alt.Endpoints = append([]proxier.Endpoint(nil), orig.Endpoints...)
	alt.Endpoints[3].Ready, alt.Endpoints[3].Serving = false, false
	var states [2]*proxier.State
	svcs[n/2] = &alt
	states[0] = proxier.NewState(nodeA, svcs...)
	svcs[n/2] = orig
	states[1] = proxier.NewState(nodeA, svcs...)
	return p, states, changed(orig), done
}

// BenchmarkKernelOneChange is one endpoint of one service going unready and back:
// a partial sync against a namespace holding n services.
func BenchmarkKernelOneChange(b *testing.B) {
	sizes := perfSizes(b)
	for _, backend := range perfBackends() {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/services=%d", backend, n), func(b *testing.B) {
				requireBackend(b, backend)
				p, states, c, done := perfLoaded(b, backend, n, 0)
				defer done()
				b.ResetTimer()
				start := time.Now()
				for i := 0; i < b.N; i++ {
					if err := p.Sync(context.Background(), states[i%2], c); err != nil {
						b.Fatal(err)
					}
				}
				total := time.Since(start)
				st := p.LastSync()
				if st.Full || st.Restores != 1 {
					b.Fatalf("not a one-restore partial sync: %+v", st)
				}
				perfReport(b, total, b.N, st)
			})
		}
	}
}

// BenchmarkKernelNoopFullSync is the periodic full sync when nothing changed, with
// the default verification ("default": a sample on nft between full read-backs) and
// reading everything back every time ("readback").
func BenchmarkKernelNoopFullSync(b *testing.B) {
	sizes := perfSizes(b)
	for _, backend := range perfBackends() {
		for _, n := range sizes {
			for _, mode := range []struct {
				name  string
				every int
			}{{"default", 0}, {"readback", 1}} {
				b.Run(fmt.Sprintf("%s/services=%d/%s", backend, n, mode.name), func(b *testing.B) {
					requireBackend(b, backend)
					p, states, _, done := perfLoaded(b, backend, n, mode.every)
					defer done()
					b.ResetTimer()
					start := time.Now()
					for i := 0; i < b.N; i++ {
						if err := p.Sync(context.Background(), states[1], proxier.FullSync()); err != nil {
							b.Fatal(err)
						}
						if st := p.LastSync(); st.Restores != 0 {
							b.Fatalf("no-op full sync restored: %+v", st)
						}
					}
					perfReport(b, time.Since(start), b.N, p.LastSync())
				})
			}
		}
	}
}
