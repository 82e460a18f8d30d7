package scale

import (
	"fmt"
	"time"
)

// Config is one harness run.
type Config struct {
	// Sizes are the Service counts to measure, ascending; the cluster grows from one to
	// the next.
	Sizes []int
	// Proxies run in this order at each size, each in its own fresh world.
	Proxies []Proxy
	// Reference names the proxy the others are compared against (kube-proxy).
	Reference string
	// ReferenceMaxSize skips the reference proxy above this size (0: no limit); it
	// is also skipped at every size after one where it timed out.
	ReferenceMaxSize int
	// OutDir receives the proxies' logs (results are written by WriteReport).
	OutDir string
	// Workload generates the Services.
	Workload Workload
	// CreateWorkers is how many clients create objects in parallel.
	CreateWorkers int

	// MinSyncPeriods are the --iptables-min-sync-period values, each measured in a
	// fresh world. The first gets every measurement; the others cold time and
	// one-change latency only.
	MinSyncPeriods []time.Duration
	// ProxyTimeout bounds the wait for a proxy's first programming; a proxy that takes
	// longer is recorded as "timeout".
	ProxyTimeout time.Duration
	// ChangeTimeout bounds the wait for one change.
	ChangeTimeout time.Duration
	// ColdProbeInterval is the gap between probes while waiting for the first sync,
	// ProbeInterval while waiting for a change.
	ColdProbeInterval, ProbeInterval time.Duration
	// ChangeRepeats one-change measurements, ChangeGap apart (from the moment the
	// previous change was seen to the next update).
	ChangeRepeats int
	ChangeGap     time.Duration
	// FirstPacketSamples connect times per target, FirstPacketGap apart.
	FirstPacketSamples int
	FirstPacketGap     time.Duration
	// Settle is the pause after the first sync before measuring, SteadyWindow how
	// long the idle proxy's CPU use is measured.
	Settle, SteadyWindow time.Duration
	// ChurnRate EndpointSlice updates per second for ChurnDuration; meanwhile the
	// sentinel moves every ChurnFlipGap (after the previous move was seen).
	ChurnRate     float64
	ChurnDuration time.Duration
	ChurnFlipGap  time.Duration

	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

// DefaultConfig is the full benchmark (make bench) without proxies and output folder.
func DefaultConfig() Config {
	return Config{
		Sizes:              []int{1000, 5000, 10000, 30000},
		Reference:          "kube-proxy",
		ReferenceMaxSize:   10000,
		Workload:           Workload{Seed: 1, Namespaces: 10},
		CreateWorkers:      16,
		MinSyncPeriods:     []time.Duration{0, time.Second},
		ProxyTimeout:       15 * time.Minute,
		ChangeTimeout:      2 * time.Minute,
		ColdProbeInterval:  20 * time.Millisecond,
		ProbeInterval:      2 * time.Millisecond,
		ChangeRepeats:      20,
		ChangeGap:          1500 * time.Millisecond,
		FirstPacketSamples: 500,
		FirstPacketGap:     5 * time.Millisecond,
		Settle:             2 * time.Second,
		SteadyWindow:       30 * time.Second,
		ChurnRate:          100,
		ChurnDuration:      60 * time.Second,
		ChurnFlipGap:       500 * time.Millisecond,
	}
}

// SmokeConfig is DefaultConfig shrunk to run in well under two minutes.
func SmokeConfig() Config {
	c := DefaultConfig()
	c.Sizes = []int{100}
	c.ReferenceMaxSize = 0
	c.ProxyTimeout = 90 * time.Second
	c.ChangeTimeout = 30 * time.Second
	c.ChangeRepeats = 5
	c.ChangeGap = 300 * time.Millisecond
	c.FirstPacketSamples = 30
	c.Settle = 500 * time.Millisecond
	c.SteadyWindow = 2 * time.Second
	c.ChurnRate = 50
	c.ChurnDuration = 4 * time.Second
	return c
}

func (c *Config) validate() error {
	if len(c.Sizes) == 0 || len(c.Proxies) == 0 || len(c.MinSyncPeriods) == 0 {
		return fmt.Errorf("scale: Config needs Sizes, Proxies and MinSyncPeriods")
	}
	for i := 1; i < len(c.Sizes); i++ {
		if c.Sizes[i] <= c.Sizes[i-1] {
			return fmt.Errorf("scale: Sizes must be ascending: %v", c.Sizes)
		}
	}
	if c.OutDir == "" {
		return fmt.Errorf("scale: Config.OutDir is empty")
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return nil
}
