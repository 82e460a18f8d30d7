package scale

import "time"

// Results is everything one harness run measured.
type Results struct {
	Started   time.Time    `json:"started"`
	Host      HostInfo     `json:"host"`
	APIServer string       `json:"apiserver"`
	Proxies   []Proxy      `json:"proxies"`
	Reference string       `json:"reference"`
	Seed      uint64       `json:"seed"`
	Config    RunParams    `json:"config"`
	Sizes     []SizeResult `json:"sizes"`
}

// RunParams records the knobs that shape the numbers.
type RunParams struct {
	ChangeRepeats      int      `json:"changeRepeats"`
	ChangeGap          Duration `json:"changeGap"`
	ProbeInterval      Duration `json:"probeInterval"`
	ColdProbeInterval  Duration `json:"coldProbeInterval"`
	FirstPacketSamples int      `json:"firstPacketSamples"`
	SteadyWindow       Duration `json:"steadyWindow"`
	ChurnRate          float64  `json:"churnRate"`
	ChurnDuration      Duration `json:"churnDuration"`
	ChurnFlipGap       Duration `json:"churnFlipGap"`
	ProxyTimeout       Duration `json:"proxyTimeout"`
}

// HostInfo describes the machine.
type HostInfo struct {
	Kernel   string `json:"kernel"`
	CPUs     int    `json:"cpus"`
	IPTables string `json:"iptables"`
	Load     string `json:"loadAtStart"`
}

// SizeResult is one cluster size.
type SizeResult struct {
	Services int    `json:"services"`
	Totals   Totals `json:"totals"`
	// Create is how long growing the cluster to this size took.
	Create Duration   `json:"create"`
	Runs   []ProxyRun `json:"runs"`
}

// ProxyRun is one proxy at one size.
type ProxyRun struct {
	Proxy  string `json:"proxy"`
	Status Status `json:"status"`
	Note   string `json:"note,omitempty"`
	// Phases are the runs with each min-sync period, in Config order; the first holds
	// the full set of measurements.
	Phases []Phase `json:"phases"`
}

// Status is how a run ended.
type Status string

// Run statuses.
const (
	StatusOK      Status = "ok"
	StatusTimeout Status = "timeout"
	StatusError   Status = "error"
	StatusSkipped Status = "skipped"
)

// Phase is one proxy process in one fresh world.
type Phase struct {
	MinSync Duration `json:"minSyncPeriod"`
	Status  Status   `json:"status"`
	Error   string   `json:"error,omitempty"`
	// Backend is the iptables variant the proxy programmed (nft or legacy).
	Backend string `json:"backend,omitempty"`
	// Cold is process start until the sentinel's ClusterIP answered.
	Cold Duration `json:"cold"`
	// OneChange is the latency of isolated sentinel moves, update call to traffic.
	OneChange        Summary    `json:"oneChange"`
	OneChangeSamples []Duration `json:"oneChangeSamples,omitempty"`

	// Full measurements, first phase only.
	Full *FullMeasurements `json:"full,omitempty"`
	Log  string            `json:"log"`
}

// FullMeasurements are taken in the first phase.
type FullMeasurements struct {
	FirstPacket FirstPacket `json:"firstPacket"`
	Kernel      KernelState `json:"kernel"`
	// SteadyCPU is CPU use of the idle proxy and its children, in cores; SteadyProxyCPU
	// of the proxy process alone.
	SteadyCPU      float64 `json:"steadyCPU"`
	SteadyProxyCPU float64 `json:"steadyProxyCPU"`
	// RSSAfterSync is VmRSS after the steady window; PeakRSS is VmHWM at the end.
	RSSAfterSync int64 `json:"rssAfterSync"`
	PeakRSS      int64 `json:"peakRSS"`
	Churn        Churn `json:"churn"`
	// CPU is the proxy's (and its children's) CPU time over the whole phase.
	CPU      Duration `json:"cpu"`
	ProxyCPU Duration `json:"proxyCPU"`
}

// FirstPacket are TCP connect times from the client namespace.
type FirstPacket struct {
	ClusterIP Summary `json:"clusterIP"`
	NodePort  Summary `json:"nodePort"`
	// Direct is a connect to the pod itself, the floor of the other two.
	Direct Summary `json:"direct"`
	Failed int     `json:"failed"`
}

// KernelState is the size of what the proxy programmed in the node namespace.
type KernelState struct {
	Lines        int `json:"iptablesSaveLines"`
	Chains       int `json:"chains"`
	Rules        int `json:"rules"`
	IPSetEntries int `json:"ipsetEntries"`
}

// Churn is the churn measurement.
type Churn struct {
	Stats ChurnStats `json:"stats"`
	// Latency is the sentinel move latency during churn.
	Latency Summary `json:"latency"`
	// CPU is the proxy's and its children's CPU seconds over the churn; ProxyCPU the
	// process alone.
	CPU      Duration `json:"cpu"`
	ProxyCPU Duration `json:"proxyCPU"`
	Duration Duration `json:"duration"`
	// Syncs and MeanSync come from kubeproxy_sync_proxy_rules_duration_seconds.
	Syncs    int      `json:"syncs"`
	MeanSync Duration `json:"meanSync"`
}
