package scale

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/kproxy/kproxy/test/netns"
)

// Run measures every proxy at every size and returns the results. It stops when ctx
// ends, after killing what it started and removing its namespaces; the results gathered
// so far are returned with ctx's error. Sizes and proxies that fail are recorded in the
// results, not returned as errors.
func Run(ctx context.Context, cfg Config) (*Results, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, err
	}
	res := &Results{Started: time.Now(), Host: hostInfo(), Proxies: cfg.Proxies, Reference: cfg.Reference, Seed: cfg.Workload.Seed,
		Config: RunParams{ChangeRepeats: cfg.ChangeRepeats, ChangeGap: Duration(cfg.ChangeGap), ProbeInterval: Duration(cfg.ProbeInterval), ColdProbeInterval: Duration(cfg.ColdProbeInterval),
			FirstPacketSamples: cfg.FirstPacketSamples, SteadyWindow: Duration(cfg.SteadyWindow), ChurnRate: cfg.ChurnRate,
			ChurnDuration: Duration(cfg.ChurnDuration), ChurnFlipGap: Duration(cfg.ChurnFlipGap), ProxyTimeout: Duration(cfg.ProxyTimeout)}}
	cfg.Logf("starting kube-apiserver and etcd")
	cl, err := StartCluster(ClusterOptions{Workers: cfg.CreateWorkers, Workload: cfg.Workload})
	if err != nil {
		return res, err
	}
	defer func() {
		if err := cl.Stop(); err != nil {
			cfg.Logf("stopping the control plane: %v", err)
		}
	}()
	res.APIServer = cl.Version
	h := &harness{cfg: cfg, cl: cl, timedOut: map[string]int{}}
	for _, n := range cfg.Sizes {
		sr, err := h.size(ctx, n)
		if sr != nil {
			res.Sizes = append(res.Sizes, *sr)
		}
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// harness is the state of one Run.
type harness struct {
	cfg      Config
	cl       *Cluster
	sentinel *Sentinel
	// timedOut maps a proxy to the size it timed out at.
	timedOut map[string]int
}

// size grows the cluster to n Services and runs every proxy.
func (h *harness) size(ctx context.Context, n int) (*SizeResult, error) {
	tot := h.cfg.Workload.Totals(n)
	h.cfg.Logf("N=%d: creating %d Services (%d ClusterIP, %d NodePort, %d LoadBalancer) with %d endpoints",
		n, n-h.cl.Services(), tot.ByKind[ClusterIP], tot.ByKind[NodePort], tot.ByKind[LoadBalancer], tot.Endpoints)
	took, err := h.cl.Grow(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("growing the cluster to %d Services: %w", n, err)
	}
	h.cfg.Logf("N=%d: created in %s", n, formatDuration(took))
	sr := &SizeResult{Services: n, Totals: tot, Create: Duration(took)}
	for _, p := range h.cfg.Proxies {
		if ctx.Err() != nil {
			return sr, ctx.Err()
		}
		run := h.proxy(ctx, n, p)
		sr.Runs = append(sr.Runs, run)
		h.cfg.Logf("N=%d %s: %s%s", n, p.Name, run.Status, suffix(run.Note))
	}
	return sr, ctx.Err()
}

func suffix(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

// proxy runs one proxy at one size: a phase per min-sync period.
func (h *harness) proxy(ctx context.Context, n int, p Proxy) ProxyRun {
	run := ProxyRun{Proxy: p.Name, Status: StatusOK}
	if p.Name == h.cfg.Reference {
		if at, ok := h.timedOut[p.Name]; ok {
			run.Status, run.Note = StatusSkipped, fmt.Sprintf("timed out at %d Services", at)
			return run
		}
		if h.cfg.ReferenceMaxSize > 0 && n > h.cfg.ReferenceMaxSize {
			run.Status, run.Note = StatusSkipped, fmt.Sprintf("not run above %d Services: its first sync takes too long", h.cfg.ReferenceMaxSize)
			return run
		}
	}
	for i, ms := range h.cfg.MinSyncPeriods {
		if ctx.Err() != nil {
			break
		}
		ph := h.phase(ctx, n, p, ms, i == 0)
		run.Phases = append(run.Phases, ph)
		switch ph.Status {
		case StatusTimeout:
			run.Status, run.Note = StatusTimeout, fmt.Sprintf("no first sync within %s (min-sync %s)", h.cfg.ProxyTimeout, time.Duration(ms))
			h.timedOut[p.Name] = n
			return run
		case StatusError:
			run.Status, run.Note = StatusError, ph.Error
		}
	}
	return run
}

// phase runs one proxy process with one min-sync period in a fresh world.
func (h *harness) phase(ctx context.Context, n int, p Proxy, minSync time.Duration, full bool) (ph Phase) {
	ph = Phase{MinSync: Duration(minSync), Status: StatusOK}
	fail := func(err error) Phase {
		switch {
		case ctx.Err() != nil:
			ph.Status, err = StatusError, fmt.Errorf("interrupted: %w", context.Cause(ctx))
		case errors.Is(err, errWaitTimeout):
			ph.Status = StatusTimeout
		default:
			ph.Status = StatusError
		}
		ph.Error = err.Error()
		h.cfg.Logf("N=%d %s min-sync %s: %v", n, p.Name, minSync, err)
		return ph
	}
	w, err := NewWorld(h.cl)
	if err != nil {
		return fail(err)
	}
	defer func() {
		if err := w.Close(); err != nil {
			h.cfg.Logf("removing %s: %v", w, err)
		}
	}()
	if err := w.ensureNode(ctx, h.cl); err != nil {
		return fail(err)
	}
	pod0, pod1 := w.Pods[0], w.Pods[1]
	if h.sentinel == nil {
		if h.sentinel, err = h.cl.CreateSentinel(ctx, nodeName, pod0.V4); err != nil {
			return fail(err)
		}
	}
	s := h.sentinel
	if err := s.MoveTo(ctx, pod0.V4); err != nil {
		return fail(err)
	}
	labels := map[netip.Addr]string{pod0.V4: pod0.Label, pod1.V4: pod1.Label}
	vip := netip.AddrPortFrom(s.ClusterIP, ServicePort)

	logName := fmt.Sprintf("%05d-%s-minsync-%s.log", n, p.Name, minSync)
	ph.Log = filepath.Join("logs", logName)
	proc, err := w.StartProxy(ctx, p, minSync, filepath.Join(h.cfg.OutDir, ph.Log))
	if err != nil {
		return fail(err)
	}
	defer func() {
		if err := proc.Stop(10 * time.Second); err != nil {
			h.cfg.Logf("stopping %s: %v", p.Name, err)
		}
	}()
	alive := func() error {
		if done, err := proc.Exited(); done {
			return fmt.Errorf("%w (%v); see %s", errExited, err, ph.Log)
		}
		return nil
	}
	h.cfg.Logf("N=%d %s min-sync %s: started (pid %d) in %s", n, p.Name, minSync, proc.Pid, w)

	seen, err := waitForLabel(ctx, w.Client.NS, vip, pod0.Label, h.cfg.ColdProbeInterval, h.cfg.ProxyTimeout, alive)
	if err != nil {
		return fail(fmt.Errorf("cold start: %w", err))
	}
	ph.Cold = Duration(seen.Sub(proc.Started))
	ph.Backend = detectBackend(ctx, w.Topo.Node.NS)
	h.cfg.Logf("N=%d %s min-sync %s: sentinel answers after %s (%s)", n, p.Name, minSync, ph.Cold, ph.Backend)

	var fm *FullMeasurements
	if full {
		fm = &FullMeasurements{}
		ph.Full = fm
		if err := sleep(ctx, h.cfg.Settle); err != nil {
			return fail(err)
		}
		targets := []netip.AddrPort{vip, netip.AddrPortFrom(w.Topo.Node.V4, s.NodePort), netip.AddrPortFrom(pod0.V4, TargetPort)}
		times, failed, err := connectTimes(ctx, w.Client.NS, targets, h.cfg.FirstPacketSamples, h.cfg.FirstPacketGap)
		if err != nil {
			return fail(fmt.Errorf("first packet: %w", err))
		}
		fm.FirstPacket = FirstPacket{ClusterIP: Summarize(times[0]), NodePort: Summarize(times[1]), Direct: Summarize(times[2]), Failed: failed}
		if fm.Kernel, err = kernelState(ctx, w.Topo.Node.NS, ph.Backend); err != nil {
			return fail(err)
		}
		st0, err := proc.Stat()
		if err != nil {
			return fail(err)
		}
		if err := sleep(ctx, h.cfg.SteadyWindow); err != nil {
			return fail(err)
		}
		st1, err := proc.Stat()
		if err != nil {
			return fail(err)
		}
		win := h.cfg.SteadyWindow.Seconds()
		fm.SteadyCPU = (st1.Total() - st0.Total()).Seconds() / win
		fm.SteadyProxyCPU = (st1.CPU - st0.CPU).Seconds() / win
		fm.RSSAfterSync = st1.RSS
		h.cfg.Logf("N=%d %s: first packet ClusterIP %s, NodePort %s (direct %s); %d iptables lines, %d chains; steady CPU %.3f cores; RSS %s",
			n, p.Name, fm.FirstPacket.ClusterIP, fm.FirstPacket.NodePort, fm.FirstPacket.Direct, fm.Kernel.Lines, fm.Kernel.Chains, fm.SteadyCPU, mib(st1.RSS))
	}

	// Isolated changes.
	mover := &mover{s: s, ns: w.Client.NS, vip: vip, labels: labels, pods: [2]netip.Addr{pod0.V4, pod1.V4},
		interval: h.cfg.ProbeInterval, timeout: h.cfg.ChangeTimeout, alive: alive}
	var lat []time.Duration
	for range h.cfg.ChangeRepeats {
		d, err := mover.move(ctx)
		if err != nil {
			ph.OneChange = Summarize(lat)
			return fail(fmt.Errorf("one change: %w", err))
		}
		lat = append(lat, d)
		ph.OneChangeSamples = append(ph.OneChangeSamples, Duration(d))
		if err := sleep(ctx, h.cfg.ChangeGap); err != nil {
			return fail(err)
		}
	}
	ph.OneChange = Summarize(lat)
	if ctx.Err() != nil {
		return fail(ctx.Err())
	}
	h.cfg.Logf("N=%d %s min-sync %s: one change p50/p99 %s", n, p.Name, minSync, ph.OneChange)

	if full {
		if err := h.churn(ctx, w, proc, mover, &fm.Churn); err != nil || ctx.Err() != nil {
			return fail(fmt.Errorf("churn: %w", err))
		}
		h.cfg.Logf("N=%d %s: churn %.0f updates/s for %s: sentinel p50/p99 %s, CPU %.1f s (proxy alone %.1f s), %d syncs, mean %s",
			n, p.Name, fm.Churn.Stats.Rate, fm.Churn.Duration, fm.Churn.Latency, fm.Churn.CPU.Seconds(), fm.Churn.ProxyCPU.Seconds(), fm.Churn.Syncs, fm.Churn.MeanSync)
		st, err := proc.Stat()
		if err != nil {
			return fail(err)
		}
		fm.PeakRSS, fm.CPU, fm.ProxyCPU = st.HWM, Duration(st.Total()), Duration(st.CPU)
	}
	return ph
}

// churn updates EndpointSlices at the configured rate while moving the sentinel.
func (h *harness) churn(ctx context.Context, w *World, proc *Process, mv *mover, out *Churn) error {
	m0, merr := w.scrapeMetrics(ctx)
	st0, err := proc.Stat()
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, h.cfg.ChurnDuration)
	defer cancel()
	start := time.Now()
	statsc := make(chan ChurnStats, 1)
	go func() {
		ch := &churner{c: h.cl}
		statsc <- ch.run(cctx, ctx, h.cfg.ChurnRate, h.cfg.Workload.Seed+uint64(time.Now().UnixNano()))
	}()
	var lat []time.Duration
	var moveErr error
	for cctx.Err() == nil {
		d, err := mv.move(ctx)
		if err != nil {
			moveErr = err
			cancel()
			break
		}
		lat = append(lat, d)
		_ = sleep(cctx, h.cfg.ChurnFlipGap)
	}
	out.Stats = <-statsc
	out.Duration = Duration(time.Since(start))
	st1, err := proc.Stat()
	if err != nil {
		return err
	}
	out.Latency = Summarize(lat)
	out.CPU, out.ProxyCPU = Duration(st1.Total()-st0.Total()), Duration(st1.CPU-st0.CPU)
	if m1, err := w.scrapeMetrics(ctx); err == nil && merr == nil {
		c0, s0, ok0 := m0.syncStats()
		c1, s1, ok1 := m1.syncStats()
		if ok0 && ok1 && c1 > c0 {
			out.Syncs = int(c1 - c0)
			out.MeanSync = Duration(time.Duration(float64(s1-s0) / (c1 - c0)))
		}
	}
	return moveErr
}

// mover moves the sentinel between the two pods and measures how long until new
// connections reach the new one.
type mover struct {
	s        *Sentinel
	ns       *netns.NS
	vip      netip.AddrPort
	labels   map[netip.Addr]string
	pods     [2]netip.Addr
	interval time.Duration
	timeout  time.Duration
	alive    func() error
}

// move points the sentinel at the other pod and returns the time from the update call
// until a new connection reached that pod.
func (m *mover) move(ctx context.Context) (time.Duration, error) {
	to := m.pods[0]
	if m.s.Endpoint() == to {
		to = m.pods[1]
	}
	start := time.Now()
	if err := m.s.MoveTo(ctx, to); err != nil {
		return 0, err
	}
	seen, err := waitForLabel(ctx, m.ns, m.vip, m.labels[to], m.interval, m.timeout, m.alive)
	if err != nil {
		return 0, err
	}
	return seen.Sub(start), nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// detectBackend tells which iptables variant holds the proxy's rules in ns.
func detectBackend(ctx context.Context, ns *netns.NS) string {
	for _, b := range []string{"nft", "legacy"} {
		out, err := ns.Exec(ctx, "iptables-"+b+"-save", "-t", "nat")
		if err == nil && bytes.Contains(out, []byte("KUBE-SERVICES")) {
			return b
		}
	}
	return "unknown"
}

// kernelState counts what iptables-save (of the proxy's backend) and ipset show in ns.
func kernelState(ctx context.Context, ns *netns.NS, backend string) (KernelState, error) {
	var k KernelState
	bin := "iptables-save"
	if backend == "nft" || backend == "legacy" {
		bin = "iptables-" + backend + "-save"
	}
	out, err := ns.Command(ctx, bin).Output()
	if err != nil {
		return k, fmt.Errorf("%s: %w", bin, err)
	}
	for line := range bytes.Lines(out) {
		k.Lines++
		switch {
		case bytes.HasPrefix(line, []byte(":")):
			k.Chains++
		case bytes.HasPrefix(line, []byte("-A ")):
			k.Rules++
		}
	}
	if _, err := exec.LookPath("ipset"); err == nil {
		if out, err := ns.Command(ctx, "ipset", "list", "-t").Output(); err == nil {
			for line := range strings.Lines(string(out)) {
				var n int
				if _, err := fmt.Sscanf(line, "Number of entries: %d", &n); err == nil {
					k.IPSetEntries += n
				}
			}
		}
	}
	return k, nil
}

// hostInfo describes the machine for the report.
func hostInfo() HostInfo {
	hi := HostInfo{CPUs: runtime.NumCPU()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		hi.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("iptables", "--version").Output(); err == nil {
		hi.IPTables = strings.TrimSpace(string(out))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		hi.Load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return hi
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
