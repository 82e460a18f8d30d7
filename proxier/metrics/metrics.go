package metrics

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kproxy/kproxy/proxier"
)

const subsystem = "kubeproxy"

// Metrics holds every collector. The zero value is not usable; call New.
type Metrics struct {
	SyncDuration             prometheus.Histogram
	SyncFullDuration         prometheus.Histogram
	SyncPartialDuration      prometheus.Histogram
	NetworkProgramming       prometheus.Histogram
	LastSyncTimestamp        prometheus.Gauge
	LastQueuedTimestamp      prometheus.Gauge
	SyncFailures             prometheus.Counter
	ServiceChangesTotal      prometheus.Counter
	RestoreFailures          prometheus.Counter
	PartialRestoreFailures   prometheus.Counter
	RulesTotal               *prometheus.GaugeVec
	RulesLast                *prometheus.GaugeVec
	NoLocalEndpoints         *prometheus.GaugeVec
	ConntrackEntriesCleared  prometheus.Counter
	ConntrackCleanupFailures prometheus.Counter
	InvalidObjects           *prometheus.CounterVec
	RulesWrittenBytes        prometheus.Counter
	NetlinkOperations        *prometheus.CounterVec
	ProgrammedServicePorts   prometheus.Gauge
	// ServiceChangesPending and EndpointChangesPending report the changes not yet
	// synced. kproxy tracks changes per service port, endpoint changes included, so
	// both report the same count; kube-proxy's names are kept for dashboards.
	ServiceChangesPending  prometheus.GaugeFunc
	EndpointChangesPending prometheus.GaugeFunc

	pending atomic.Pointer[func() int]
}

// syncBuckets match kube-proxy's: exponential from 1 ms to about 16 s.
var syncBuckets = prometheus.ExponentialBuckets(0.001, 2, 15)

// New creates the collectors; Register them on a registry to export them.
func New() *Metrics {
	h := func(name, help string, buckets []float64) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Subsystem: subsystem, Name: name, Help: help, Buckets: buckets})
	}
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Subsystem: subsystem, Name: name, Help: help})
	}
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Subsystem: subsystem, Name: name, Help: help})
	}
	m := &Metrics{
		SyncDuration:        h("sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds", syncBuckets),
		SyncFullDuration:    h("sync_full_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for full resyncs", syncBuckets),
		SyncPartialDuration: h("sync_partial_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds for partial resyncs", syncBuckets),
		NetworkProgramming: h("network_programming_duration_seconds", "In Cluster Network Programming Latency in seconds",
			merge(prometheus.LinearBuckets(0.25, 0.25, 2), prometheus.LinearBuckets(1, 1, 59),
				prometheus.LinearBuckets(60, 5, 12), prometheus.LinearBuckets(120, 30, 7))),
		LastSyncTimestamp:      g("sync_proxy_rules_last_timestamp_seconds", "The last time proxy rules were successfully synced"),
		LastQueuedTimestamp:    g("sync_proxy_rules_last_queued_timestamp_seconds", "The last time a sync of proxy rules was queued"),
		SyncFailures:           c("sync_proxy_rules_failures_total", "Number of failed syncs of proxy rules"),
		ServiceChangesTotal:    c("sync_proxy_rules_service_changes_total", "Cumulative proxy rules Service changes"),
		RestoreFailures:        c("sync_proxy_rules_iptables_restore_failures_total", "Cumulative proxy iptables restore failures"),
		PartialRestoreFailures: c("sync_proxy_rules_iptables_partial_restore_failures_total", "Cumulative proxy iptables partial restore failures"),
		RulesTotal: prometheus.NewGaugeVec(prometheus.GaugeOpts{Subsystem: subsystem, Name: "sync_proxy_rules_iptables_total",
			Help: "Total number of iptables rules owned by kube-proxy"}, []string{"table"}),
		RulesLast: prometheus.NewGaugeVec(prometheus.GaugeOpts{Subsystem: subsystem, Name: "sync_proxy_rules_iptables_last",
			Help: "Number of iptables rules written by kube-proxy in last sync"}, []string{"table"}),
		NoLocalEndpoints: prometheus.NewGaugeVec(prometheus.GaugeOpts{Subsystem: subsystem, Name: "sync_proxy_rules_no_local_endpoints_total",
			Help: "Number of services with a Local traffic policy and no endpoints"}, []string{"traffic_policy"}),
		ConntrackEntriesCleared:  c("conntrack_entries_cleared_total", "Number of stale conntrack entries cleared"),
		ConntrackCleanupFailures: c("conntrack_cleanup_failures_total", "Number of failed conntrack cleanups"),
		InvalidObjects: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "kproxy", Name: "invalid_objects_total",
			Help: "Services, EndpointSlices and Nodes left out of the model because they are invalid"}, []string{"kind", "reason"}),
		RulesWrittenBytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "kproxy", Name: "rules_written_bytes_total",
			Help: "Bytes of ruleset written to the kernel"}),
		NetlinkOperations: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "kproxy", Name: "netlink_operations_total",
			Help: "Netlink operations issued, by operation"}, []string{"op"}),
		ProgrammedServicePorts: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "kproxy", Name: "programmed_service_ports",
			Help: "Service ports in the last successfully synced state"}),
	}
	m.ServiceChangesPending = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Subsystem: subsystem,
		Name: "sync_proxy_rules_service_changes_pending", Help: "Pending proxy rules Service changes"}, m.pendingChanges)
	m.EndpointChangesPending = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Subsystem: subsystem,
		Name: "sync_proxy_rules_endpoint_changes_pending", Help: "Pending proxy rules Endpoint changes"}, m.pendingChanges)
	return m
}

// SetPendingSource tells the pending-changes gauges where to read the count, e.g. a
// proxier.Builder's PendingChanges. Until it is set they report 0.
func (m *Metrics) SetPendingSource(f func() int) { m.pending.Store(&f) }

func (m *Metrics) pendingChanges() float64 {
	if f := m.pending.Load(); f != nil {
		return float64((*f)())
	}
	return 0
}

func merge(parts ...[]float64) []float64 {
	var out []float64
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// Collectors returns every collector, for registration.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		m.SyncDuration, m.SyncFullDuration, m.SyncPartialDuration, m.NetworkProgramming,
		m.LastSyncTimestamp, m.LastQueuedTimestamp, m.SyncFailures, m.ServiceChangesTotal,
		m.RestoreFailures, m.PartialRestoreFailures, m.RulesTotal, m.RulesLast, m.NoLocalEndpoints,
		m.ConntrackEntriesCleared, m.ConntrackCleanupFailures, m.InvalidObjects, m.RulesWrittenBytes,
		m.NetlinkOperations, m.ProgrammedServicePorts, m.ServiceChangesPending, m.EndpointChangesPending,
	}
}

// Register registers every collector on reg (for instance controller-runtime's
// metrics.Registry, which its manager serves).
func (m *Metrics) Register(reg prometheus.Registerer) error {
	for _, c := range m.Collectors() {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

var _ proxier.SyncObserver = (*Metrics)(nil)

// SyncQueued records when a change was queued.
func (m *Metrics) SyncQueued(at time.Time) { m.LastQueuedTimestamp.Set(float64(at.UnixNano()) / 1e9) }

// SyncDone records sync latency, and on success the network programming latency of
// every service whose EndpointSlice change this sync applied.
func (m *Metrics) SyncDone(r proxier.SyncResult) {
	secs := r.Duration.Seconds()
	m.SyncDuration.Observe(secs)
	if r.Changes.Full {
		m.SyncFullDuration.Observe(secs)
	} else {
		m.SyncPartialDuration.Observe(secs)
	}
	if r.Err != nil {
		m.SyncFailures.Inc()
		return
	}
	m.ServiceChangesTotal.Add(float64(len(r.Changes.Services)))
	end := r.Start.Add(r.Duration)
	m.LastSyncTimestamp.Set(float64(end.UnixNano()) / 1e9)
	for _, t := range r.Changes.TriggerTimes {
		if d := end.Sub(t); d >= 0 {
			m.NetworkProgramming.Observe(d.Seconds())
		}
	}
	m.ProgrammedServicePorts.Set(float64(r.State.Len()))
}

// InvalidObject counts an object left out of the model.
func (m *Metrics) InvalidObject(kind, reason string) {
	m.InvalidObjects.WithLabelValues(kind, reason).Inc()
}
