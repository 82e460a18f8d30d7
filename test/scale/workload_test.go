package scale

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestWorkloadIsDeterministicAndShaped(t *testing.T) {
	w := Workload{Seed: 1, Namespaces: 10}
	if a, b := w.Service(1234), w.Service(1234); a != b {
		t.Fatalf("Service(1234) differs between calls: %+v %+v", a, b)
	}
	tot := w.Totals(10000)
	frac := func(k Kind) float64 { return float64(tot.ByKind[k]) / float64(tot.Services) }
	for k, want := range map[Kind]float64{ClusterIP: 0.7, NodePort: 0.2, LoadBalancer: 0.1} {
		if math.Abs(frac(k)-want) > 0.02 {
			t.Errorf("%s: %.3f of Services, want ≈ %.2f", k, frac(k), want)
		}
	}
	if math.Abs(tot.MeanEndpoints-10) > 0.5 {
		t.Errorf("mean endpoints %.2f, want ≈ 10", tot.MeanEndpoints)
	}
	lo, hi := 100, 0
	for i := range 10000 {
		s := w.Service(i)
		lo, hi = min(lo, s.Endpoints), max(hi, s.Endpoints)
		sl := s.Slice()
		seen := map[string]bool{}
		for _, e := range sl.Endpoints {
			if seen[e.Addresses[0]] {
				t.Fatalf("service %d: duplicate endpoint %s", i, e.Addresses[0])
			}
			seen[e.Addresses[0]] = true
			if !strings.HasPrefix(e.Addresses[0], "10.244.") {
				t.Fatalf("service %d: endpoint %s outside the fake pod range", i, e.Addresses[0])
			}
		}
	}
	if lo != 1 || hi != maxEndpoints {
		t.Errorf("endpoints range [%d, %d], want [1, %d]", lo, hi, maxEndpoints)
	}
	if ip := IngressIP(300); ip.String() != "198.19.1.44" {
		t.Errorf("IngressIP(300) = %s", ip)
	}
}

func TestSummarize(t *testing.T) {
	var s []time.Duration
	for i := 100; i >= 1; i-- {
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	got := Summarize(s)
	if got.N != 100 || got.P50 != Duration(50*time.Millisecond) || got.P99 != Duration(99*time.Millisecond) || got.Max != Duration(100*time.Millisecond) {
		t.Errorf("%+v", got)
	}
	if Summarize(nil).String() != "–" {
		t.Error("empty summary")
	}
}

func TestProcStatParsesSelf(t *testing.T) {
	st, err := readProcStat(1)
	if err != nil {
		t.Skip(err)
	}
	if st.HWM == 0 && st.RSS == 0 {
		t.Logf("pid 1 reports no memory (a kernel thread?): %+v", st)
	}
}

func TestReport(t *testing.T) {
	ms := func(v float64) Duration { return Duration(time.Duration(v * float64(time.Millisecond))) }
	sum := func(p50, p99 float64) Summary { return Summary{N: 20, P50: ms(p50), P99: ms(p99), Max: ms(p99)} }
	run := func(name string, cold, change float64, rss int64) ProxyRun {
		return ProxyRun{Proxy: name, Status: StatusOK, Phases: []Phase{
			{MinSync: 0, Status: StatusOK, Cold: ms(cold), OneChange: sum(change, 2*change), Backend: "nft", Full: &FullMeasurements{
				FirstPacket: FirstPacket{ClusterIP: sum(0.1, 0.2), NodePort: sum(0.2, 0.3), Direct: sum(0.05, 0.1)},
				Kernel:      KernelState{Lines: 1000, Chains: 100, Rules: 800},
				PeakRSS:     rss, Churn: Churn{Latency: sum(change, 3*change), CPU: ms(5000)},
			}},
			{MinSync: Duration(time.Second), Status: StatusOK, Cold: ms(cold), OneChange: sum(change*10, change*20)},
		}}
	}
	res := &Results{Started: time.Unix(0, 0), Reference: Upstream, Proxies: []Proxy{{Name: KProxy}, {Name: Upstream}},
		Sizes: []SizeResult{
			{Services: 100, Totals: Workload{Seed: 1}.Totals(100), Runs: []ProxyRun{run(KProxy, 500, 10, 40<<20), run(Upstream, 2000, 100, 60<<20)}},
			{Services: 1000, Totals: Workload{Seed: 1}.Totals(1000), Runs: []ProxyRun{run(KProxy, 900, 12, 50<<20),
				{Proxy: Upstream, Status: StatusTimeout, Note: "no first sync", Phases: []Phase{{Status: StatusTimeout}}}}},
		}}
	dir := t.TempDir()
	ratios, err := WriteReport(res, dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ratios, "| 100 | kproxy | 0.25× | 0.10× | 0.10× |") {
		t.Errorf("ratios:\n%s", ratios)
	}
	if !strings.Contains(ratios, "| 1000 | kproxy | < 1 (reference timed out)") {
		t.Errorf("ratios with a timed-out reference:\n%s", ratios)
	}
	md := Markdown(res, nil)
	for _, want := range []string{"| 100 (", "timeout (>", "kube-proxy at 1000 Services: timeout"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
