package scale

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// WriteReport writes results.md, results.json and the PNG plots into dir and returns
// the ratio table (kproxy / reference) as text, for printing.
func WriteReport(res *Results, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return "", err
	}
	plots, err := writePlots(res, dir)
	if err != nil {
		return "", err
	}
	md := Markdown(res, plots)
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(md), 0o644); err != nil {
		return "", err
	}
	return RatioTable(res), nil
}

// ReadResults reads a results.json written by WriteReport.
func ReadResults(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &res, nil
}

// Markdown renders the results as a Markdown document; plots are file names to embed.
func Markdown(res *Results, plots []string) string {
	var b strings.Builder
	names := proxyNames(res)
	fmt.Fprintf(&b, "# Scale benchmark: %s\n\n", strings.Join(names, " vs "))
	fmt.Fprintf(&b, "Run %s. Host: Linux %s, %d CPUs (load at start %s), %s. API server %s.",
		res.Started.Format("2006-01-02 15:04 MST"), res.Host.Kernel, res.Host.CPUs, res.Host.Load, res.Host.IPTables, res.APIServer)
	for _, p := range res.Proxies {
		fmt.Fprintf(&b, " %s: %s.", p.Name, p.Version)
	}
	c := res.Config
	fmt.Fprintf(&b, "\n\nWorkload (seed %d): Services 70%% ClusterIP, 20%% NodePort, 10%% LoadBalancer with an ingress IP; one TCP port; "+
		"1–50 endpoints each (geometric, mean ≈ 10), plus the sentinel NodePort Service backed by a real pod. "+
		"Each proxy runs with kube-proxy's flags (`--proxy-mode=iptables`) in its own fresh network namespace world, one after the other.\n\n", res.Seed)
	fmt.Fprintf(&b, "Parameters: one change ×%d (%s apart), probes every %s; churn %.0f updates/s for %s (sentinel moved every %s meanwhile); "+
		"first packet %d connects per target; steady window %s; first-sync timeout %s.\n\n",
		c.ChangeRepeats, c.ChangeGap, c.ProbeInterval, c.ChurnRate, c.ChurnDuration, c.ChurnFlipGap, c.FirstPacketSamples, c.SteadyWindow, c.ProxyTimeout)

	b.WriteString("## Results\n\n")
	b.WriteString("| Services (endpoints) | proxy | cold program | 1-change p50 / p99, min-sync 0 | 1-change p50 / p99, min-sync 1s | " +
		"churn: change p50 / p99 | churn CPU s (proxy alone) | steady CPU (cores) | peak RSS | first packet ClusterIP p50 / p99 | " +
		"NodePort p50 / p99 | direct p50 | iptables-save lines / chains | backend |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	var notes []string
	for _, sr := range res.Sizes {
		for _, r := range sr.Runs {
			row := []string{fmt.Sprintf("%d (%d)", sr.Services, sr.Totals.Endpoints), r.Proxy}
			if r.Note != "" {
				notes = append(notes, fmt.Sprintf("%s at %d Services: %s: %s", r.Proxy, sr.Services, r.Status, r.Note))
			}
			if len(r.Phases) == 0 {
				row = append(row, string(r.Status))
				for len(row) < 14 {
					row = append(row, "–")
				}
				b.WriteString("| " + strings.Join(row, " | ") + " |\n")
				continue
			}
			p0 := r.Phases[0]
			row = append(row, coldCell(p0, res.Config.ProxyTimeout), p0.OneChange.String(), phaseCell(r, time.Second))
			if f := p0.Full; f != nil {
				row = append(row, f.Churn.Latency.String(),
					fmt.Sprintf("%.1f (%.1f)", f.Churn.CPU.Seconds(), f.Churn.ProxyCPU.Seconds()),
					fmt.Sprintf("%.3f", f.SteadyCPU), mib(f.PeakRSS),
					f.FirstPacket.ClusterIP.String(), f.FirstPacket.NodePort.String(), f.FirstPacket.Direct.P50.String(),
					fmt.Sprintf("%d / %d", f.Kernel.Lines, f.Kernel.Chains), p0.Backend)
			}
			for len(row) < 14 {
				row = append(row, "–")
			}
			b.WriteString("| " + strings.Join(row, " | ") + " |\n")
		}
	}
	b.WriteString("\n")
	if len(res.Proxies) > 1 {
		b.WriteString("## Ratios\n\n")
		b.WriteString(RatioTable(res))
		b.WriteString("\n")
	}
	for _, p := range plots {
		fmt.Fprintf(&b, "![%s](%s)\n", strings.TrimSuffix(p, ".png"), p)
	}
	if len(plots) > 0 {
		b.WriteString("\n")
	}
	b.WriteString("## Notes\n\n")
	for _, n := range notes {
		b.WriteString("- " + n + "\n")
	}
	for _, sr := range res.Sizes {
		fmt.Fprintf(&b, "- %d Services: %d ClusterIP, %d NodePort, %d LoadBalancer, %d endpoints (mean %.2f); created in %s.\n",
			sr.Services, sr.Totals.ByKind[ClusterIP], sr.Totals.ByKind[NodePort], sr.Totals.ByKind[LoadBalancer], sr.Totals.Endpoints, sr.Totals.MeanEndpoints, sr.Create)
	}
	b.WriteString(`- Cold program: process start until a new TCP connection from the client namespace to the sentinel's ClusterIP reaches its pod (probed every ` + res.Config.ColdProbeInterval.String() + `); includes API list/watch and the first sync.
- 1-change: time from the EndpointSlice update call until a new connection reaches the newly named pod; changes are isolated (the gap above separates them). The min-sync 1s column is a separate process in a fresh world.
- Churn: EndpointSlice updates (one endpoint address replaced) at the given rate across all Services, while the sentinel is moved and timed as above; CPU is utime+stime of the proxy plus the children it waited for (iptables-save/-restore), proxy alone in parentheses.
- Steady CPU: the same, per second of an idle window after the first sync. Peak RSS: VmHWM of the proxy process (children not included).
- First packet: TCP connect time (SYN to SYN-ACK) from the client to the sentinel's ClusterIP and NodePort and, as a floor, directly to the pod.
- Kernel state: iptables-save of the proxy's backend in the node namespace (all tables, IPv4).
`)
	return b.String()
}

func coldCell(p Phase, timeout Duration) string {
	switch p.Status {
	case StatusTimeout:
		return "timeout (> " + timeout.String() + ")"
	case StatusError:
		if p.Cold == 0 {
			return "error"
		}
	}
	return p.Cold.String()
}

// phaseCell is the one-change summary of the phase with min-sync ms.
func phaseCell(r ProxyRun, ms time.Duration) string {
	for _, p := range r.Phases {
		if time.Duration(p.MinSync) != ms {
			continue
		}
		if p.Status == StatusTimeout && p.OneChange.N == 0 {
			return "timeout"
		}
		return p.OneChange.String()
	}
	return "–"
}

func proxyNames(res *Results) []string {
	var out []string
	for _, p := range res.Proxies {
		out = append(out, p.Name)
	}
	return out
}

// ratioMetric is one column of the ratio table.
type ratioMetric struct {
	name string
	get  func(r ProxyRun) (float64, bool)
}

func phase0(r ProxyRun) (Phase, bool) {
	if len(r.Phases) == 0 || r.Phases[0].Status != StatusOK {
		return Phase{}, false
	}
	return r.Phases[0], true
}

// full returns the full measurements of r's first phase; never nil.
func full(r ProxyRun) (*FullMeasurements, bool) {
	p, ok := phase0(r)
	if !ok || p.Full == nil {
		return &FullMeasurements{}, false
	}
	return p.Full, true
}

// The figures the ratio table and the plots use; each reports false when r lacks it.
var (
	coldOf    = func(r ProxyRun) (float64, bool) { p, ok := phase0(r); return p.Cold.Seconds(), ok }
	change0Of = func(r ProxyRun) (float64, bool) {
		p, ok := phase0(r)
		return p.OneChange.P50.Seconds(), ok && p.OneChange.N > 0
	}
	change1sOf = func(r ProxyRun) (float64, bool) {
		for _, p := range r.Phases {
			if time.Duration(p.MinSync) == time.Second && p.Status == StatusOK {
				return p.OneChange.P50.Seconds(), p.OneChange.N > 0
			}
		}
		return 0, false
	}
	churnP99Of = func(r ProxyRun) (float64, bool) {
		f, ok := full(r)
		return f.Churn.Latency.P99.Seconds(), ok && f.Churn.Latency.N > 0
	}
	churnCPUOf  = func(r ProxyRun) (float64, bool) { f, ok := full(r); return f.Churn.CPU.Seconds(), ok }
	peakRSSOf   = func(r ProxyRun) (float64, bool) { f, ok := full(r); return float64(f.PeakRSS), ok }
	fpClusterOf = func(r ProxyRun) (float64, bool) { f, ok := full(r); return f.FirstPacket.ClusterIP.P50.Seconds(), ok }
	fpNodeOf    = func(r ProxyRun) (float64, bool) { f, ok := full(r); return f.FirstPacket.NodePort.P50.Seconds(), ok }
	linesOf     = func(r ProxyRun) (float64, bool) { f, ok := full(r); return float64(f.Kernel.Lines), ok }
)

var ratioMetrics = []ratioMetric{
	{"cold program", coldOf},
	{"1-change p50 (0)", change0Of},
	{"1-change p50 (1s)", change1sOf},
	{"churn p99", churnP99Of},
	{"churn CPU", churnCPUOf},
	{"peak RSS", peakRSSOf},
	{"first packet ClusterIP p50", fpClusterOf},
	{"first packet NodePort p50", fpNodeOf},
	{"iptables lines", linesOf},
}

// RatioTable is a Markdown table of every other proxy's figures divided by the
// reference's, per size (smaller is better for every column).
func RatioTable(res *Results) string {
	var b strings.Builder
	b.WriteString("| Services | proxy / " + res.Reference)
	for _, m := range ratioMetrics {
		b.WriteString(" | " + m.name)
	}
	b.WriteString(" |\n|---|---" + strings.Repeat("|---", len(ratioMetrics)) + "|\n")
	for _, sr := range res.Sizes {
		var ref *ProxyRun
		for i := range sr.Runs {
			if sr.Runs[i].Proxy == res.Reference {
				ref = &sr.Runs[i]
			}
		}
		for _, r := range sr.Runs {
			if r.Proxy == res.Reference {
				continue
			}
			fmt.Fprintf(&b, "| %d | %s", sr.Services, r.Proxy)
			for _, m := range ratioMetrics {
				b.WriteString(" | " + ratioCell(m, r, ref))
			}
			b.WriteString(" |\n")
		}
	}
	return b.String()
}

func ratioCell(m ratioMetric, r ProxyRun, ref *ProxyRun) string {
	v, ok := m.get(r)
	if !ok {
		return "–"
	}
	if ref == nil {
		return "no reference"
	}
	if ref.Status == StatusTimeout && m.name == "cold program" {
		return "< 1 (reference timed out)"
	}
	rv, rok := m.get(*ref)
	if !rok {
		return "no reference"
	}
	if rv == 0 {
		return "–"
	}
	q := v / rv
	switch {
	case q >= 10:
		return fmt.Sprintf("%.0f×", q)
	case q >= 0.0995:
		return fmt.Sprintf("%.2f×", q)
	}
	return fmt.Sprintf("%.3f×", q)
}
