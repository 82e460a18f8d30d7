// Command bench runs the scale harness of test/scale: kproxy and upstream kube-proxy,
// in turn, against the same real API server at each size, and writes results.md,
// results.json and PNG plots into the output folder. It needs root (network
// namespaces), iptables and the envtest binaries (make envtest-assets).
//
//	go run ./test/scale/cmd/bench -sizes 1000,5000 -out test/scale/results/tmp/run1
//
// Interrupting it (Ctrl-C, SIGTERM) stops the proxies, removes the namespaces and
// still writes what was measured so far.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kproxy/kproxy/test/envtest"
	"github.com/kproxy/kproxy/test/scale"
)

func main() {
	log.SetFlags(log.Ltime)
	if err := run(); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func run() error {
	def := scale.DefaultConfig()
	smoke := flag.Bool("smoke", false, "use the smoke test's short windows (and 100 Services unless -sizes is given)")
	sizes := flag.String("sizes", joinInts(def.Sizes), "comma-separated Service counts, ascending")
	out := flag.String("out", "", "output folder (default test/scale/results/<date>); results/tmp is git-ignored")
	proxies := flag.String("proxies", scale.KProxy+","+scale.Upstream, "proxies to run, in order: kproxy, kube-proxy")
	kproxyBin := flag.String("kproxy-bin", "", "kproxy binary (default: build ./cmd/kproxy)")
	upstreamBin := flag.String("kube-proxy-bin", "", "upstream kube-proxy binary (default: hack/envtest-assets.sh kube-proxy)")
	refMax := flag.Int("upstream-max-size", def.ReferenceMaxSize, "run upstream kube-proxy only up to this many Services (0: always)")
	minSync := flag.String("min-sync", "0s,1s", "--iptables-min-sync-period values; the first gets every measurement")
	proxyTimeout := flag.Duration("proxy-timeout", def.ProxyTimeout, "per proxy and size: longest wait for the first sync before recording \"timeout\"")
	changeTimeout := flag.Duration("change-timeout", def.ChangeTimeout, "longest wait for one change")
	repeats := flag.Int("change-repeats", def.ChangeRepeats, "one-change measurements per proxy and min-sync period")
	gap := flag.Duration("change-gap", def.ChangeGap, "pause between one-change measurements")
	probe := flag.Duration("probe-interval", def.ProbeInterval, "gap between probes while waiting for a change")
	churnRate := flag.Float64("churn-rate", def.ChurnRate, "EndpointSlice updates per second during churn")
	churnDur := flag.Duration("churn-duration", def.ChurnDuration, "how long churn lasts")
	steady := flag.Duration("steady", def.SteadyWindow, "idle window for steady CPU")
	samples := flag.Int("first-packet-samples", def.FirstPacketSamples, "TCP connects per first-packet target")
	seed := flag.Uint64("seed", def.Workload.Seed, "workload seed")
	total := flag.Duration("timeout", 0, "stop everything after this long (0: no limit)")
	replot := flag.String("replot", "", "only rewrite results.md and the plots of this output folder from its results.json")
	flag.Parse()

	if *replot != "" {
		res, err := scale.ReadResults(filepath.Join(*replot, "results.json"))
		if err != nil {
			return err
		}
		ratios, err := scale.WriteReport(res, *replot)
		fmt.Print(ratios)
		return err
	}

	cfg := def
	if *smoke {
		cfg = scale.SmokeConfig()
	}
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	if !*smoke || set["sizes"] {
		if cfg.Sizes, err = parseInts(*sizes); err != nil {
			return err
		}
	}
	if !*smoke || set["min-sync"] {
		if cfg.MinSyncPeriods, err = parseDurations(*minSync); err != nil {
			return err
		}
	}
	override := func(name string, apply func()) {
		if !*smoke || set[name] {
			apply()
		}
	}
	override("upstream-max-size", func() { cfg.ReferenceMaxSize = *refMax })
	override("proxy-timeout", func() { cfg.ProxyTimeout = *proxyTimeout })
	override("change-timeout", func() { cfg.ChangeTimeout = *changeTimeout })
	override("change-repeats", func() { cfg.ChangeRepeats = *repeats })
	override("change-gap", func() { cfg.ChangeGap = *gap })
	override("probe-interval", func() { cfg.ProbeInterval = *probe })
	override("churn-rate", func() { cfg.ChurnRate = *churnRate })
	override("churn-duration", func() { cfg.ChurnDuration = *churnDur })
	override("steady", func() { cfg.SteadyWindow = *steady })
	override("first-packet-samples", func() { cfg.FirstPacketSamples = *samples })
	cfg.Workload.Seed = *seed
	cfg.Logf = log.Printf

	if os.Geteuid() != 0 {
		return errors.New("bench: needs root to create network namespaces")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *total > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *total)
		defer cancel()
	}

	cfg.OutDir = *out
	if cfg.OutDir == "" {
		root, err := envtest.RepoRoot()
		if err != nil {
			return err
		}
		cfg.OutDir = filepath.Join(root, "test", "scale", "results", time.Now().Format("2006-01-02"))
		if _, err := os.Stat(cfg.OutDir); err == nil {
			cfg.OutDir += time.Now().Format("-150405")
		}
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return err
	}
	binDir, err := os.MkdirTemp("", "kproxy-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(binDir)
	for _, name := range strings.Split(*proxies, ",") {
		var p scale.Proxy
		switch name = strings.TrimSpace(name); {
		case name == scale.KProxy && *kproxyBin != "":
			p, err = scale.NewProxy(ctx, name, *kproxyBin)
		case name == scale.KProxy:
			log.Print("building kproxy")
			p, err = scale.BuildKProxy(ctx, binDir)
		case name == scale.Upstream && *upstreamBin != "":
			p, err = scale.NewProxy(ctx, name, *upstreamBin)
		case name == scale.Upstream:
			log.Print("finding upstream kube-proxy (built once into the envtest cache)")
			p, err = scale.UpstreamKubeProxy(ctx)
		default:
			err = fmt.Errorf("unknown proxy %q (want %s or %s)", name, scale.KProxy, scale.Upstream)
		}
		if err != nil {
			return err
		}
		log.Printf("%s: %s (%s)", p.Name, p.Version, p.Binary)
		cfg.Proxies = append(cfg.Proxies, p)
	}
	cfg.Reference = scale.Upstream

	res, runErr := scale.Run(ctx, cfg)
	if res == nil {
		return runErr
	}
	ratios, err := scale.WriteReport(res, cfg.OutDir)
	if err != nil {
		return errors.Join(runErr, err)
	}
	fmt.Printf("\nkproxy / kube-proxy (smaller is better):\n%s\nresults: %s\n", ratios, filepath.Join(cfg.OutDir, "results.md"))
	if runErr != nil {
		return fmt.Errorf("stopped early (partial results written): %w", runErr)
	}
	return nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(strings.ToLower(f))
		mult := 1
		if strings.HasSuffix(f, "k") {
			f, mult = strings.TrimSuffix(f, "k"), 1000
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad size %q", f)
		}
		out = append(out, n*mult)
	}
	return out, nil
}

func parseDurations(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, f := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func joinInts(v []int) string {
	var s []string
	for _, n := range v {
		s = append(s, strconv.Itoa(n))
	}
	return strings.Join(s, ",")
}
