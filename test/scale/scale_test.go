package scale

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs the harness end to end at its smallest size, both proxies, with short
// windows: it checks that the harness works (each proxy programs the sentinel, every
// measurement produces numbers, the report is written), not how fast the proxies are.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an apiserver and two proxies; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	for _, bin := range []string{"iptables", "iptables-save"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed", bin)
		}
	}
	// Stop (and clean up) well before go test's own timeout would kill the binary
	// with namespaces and processes left behind.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if dl, ok := t.Deadline(); ok {
		var c2 context.CancelFunc
		ctx, c2 = context.WithDeadline(ctx, dl.Add(-30*time.Second))
		defer c2()
	}
	dir := t.TempDir()
	kp, err := BuildKProxy(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	up, err := UpstreamKubeProxy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := SmokeConfig()
	cfg.Proxies = []Proxy{kp, up}
	cfg.OutDir = filepath.Join(dir, "out")
	cfg.Logf = t.Logf
	start := time.Now()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	t.Logf("harness ran in %s", time.Since(start).Round(time.Second))
	ratios, err := WriteReport(res, cfg.OutDir)
	if err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(cfg.OutDir, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("results.md:\n%s\nratios:\n%s", md, ratios)

	if len(res.Sizes) != 1 || len(res.Sizes[0].Runs) != 2 {
		t.Fatalf("want 1 size with 2 runs, got %+v", res.Sizes)
	}
	for _, r := range res.Sizes[0].Runs {
		if r.Status != StatusOK || len(r.Phases) != len(cfg.MinSyncPeriods) {
			t.Errorf("%s: status %s (%s), %d phases", r.Proxy, r.Status, r.Note, len(r.Phases))
			logTail(t, cfg.OutDir, r)
			continue
		}
		for _, ph := range r.Phases {
			if ph.Cold <= 0 || ph.OneChange.N != cfg.ChangeRepeats {
				t.Errorf("%s min-sync %s: cold %s, %d one-change samples", r.Proxy, ph.MinSync, ph.Cold, ph.OneChange.N)
			}
		}
		f := r.Phases[0].Full
		switch {
		case f == nil:
			t.Errorf("%s: no full measurements", r.Proxy)
		case f.FirstPacket.ClusterIP.N == 0 || f.FirstPacket.NodePort.N == 0 || f.FirstPacket.Direct.N == 0:
			t.Errorf("%s: first packet %+v", r.Proxy, f.FirstPacket)
		case f.Kernel.Chains == 0 || f.Kernel.Rules == 0:
			t.Errorf("%s: kernel state %+v", r.Proxy, f.Kernel)
		case f.PeakRSS == 0 || f.CPU == 0:
			t.Errorf("%s: peak RSS %d, CPU %s", r.Proxy, f.PeakRSS, f.CPU)
		case f.Churn.Stats.Updates == 0 || f.Churn.Latency.N == 0:
			t.Errorf("%s: churn %+v", r.Proxy, f.Churn)
		}
	}
	for _, f := range []string{"results.json", "cold.png", "one-change.png", "rss.png", "first-packet.png"} {
		if st, err := os.Stat(filepath.Join(cfg.OutDir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	if !strings.Contains(string(md), "| 100 (") {
		t.Errorf("results.md lacks the 100-Service rows")
	}
}

// logTail logs the end of a failed run's proxy logs.
func logTail(t *testing.T, dir string, r ProxyRun) {
	for _, ph := range r.Phases {
		b, err := os.ReadFile(filepath.Join(dir, ph.Log))
		if err != nil {
			continue
		}
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		t.Logf("%s min-sync %s log tail:\n%s", r.Proxy, ph.MinSync, b)
	}
}
