package healthcheck

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/kproxy/kproxy/proxier"
)

// ProxyHealthOptions configures a ProxyHealth.
type ProxyHealthOptions struct {
	// HealthTimeout is how long a queued change may wait for a successful sync before
	// the proxy is unhealthy. kube-proxy uses 2 × syncPeriod; the default is 60s.
	HealthTimeout time.Duration
	// Clock is for tests; default the real clock.
	Clock clock.PassiveClock
}

// ProxyHealth tracks whether the data plane keeps up with the model, and serves that
// as kube-proxy's /healthz and /livez. It is a proxier.SyncObserver: add it to the
// Runner's observers.
//
// The proxy is healthy while nothing is pending, or while the oldest pending change is
// younger than the health timeout. A change is pending from the moment the Runner
// queues it (SyncQueued) until a sync succeeds. A failed sync also counts as pending
// from its start when nothing else was, so a data plane that cannot be programmed goes
// unhealthy even when no new change arrives. Before the first sync nothing is pending:
// the proxy is healthy while it starts, as kube-proxy's is.
type ProxyHealth struct {
	timeout time.Duration
	clock   clock.PassiveClock

	mu            sync.RWMutex
	lastUpdated   time.Time // end of the last successful sync
	oldestPending time.Time // zero when nothing is pending
	nodeEligible  bool

	healthzTotal *prometheus.CounterVec
	livezTotal   *prometheus.CounterVec
}

var _ proxier.SyncObserver = (*ProxyHealth)(nil)

// NewProxyHealth returns a ProxyHealth with nothing pending and the node eligible.
func NewProxyHealth(opts ProxyHealthOptions) *ProxyHealth {
	if opts.HealthTimeout <= 0 {
		opts.HealthTimeout = 60 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Subsystem: "kubeproxy", Name: name, Help: help}, []string{"code"})
	}
	return &ProxyHealth{
		timeout:      opts.HealthTimeout,
		clock:        opts.Clock,
		nodeEligible: true,
		healthzTotal: counter("proxy_healthz_total", "Responses of the /healthz endpoint, by HTTP status code"),
		livezTotal:   counter("proxy_livez_total", "Responses of the /livez endpoint, by HTTP status code"),
	}
}

// Collectors returns the counters of /healthz and /livez responses
// (kubeproxy_proxy_healthz_total and kubeproxy_proxy_livez_total), for registration.
func (h *ProxyHealth) Collectors() []prometheus.Collector {
	return []prometheus.Collector{h.healthzTotal, h.livezTotal}
}

// SyncQueued records that a change waits for a sync.
func (h *ProxyHealth) SyncQueued(at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.oldestPending.IsZero() {
		h.oldestPending = at
	}
}

// SyncDone clears what is pending after a successful sync, marks a failed one as
// pending, and takes the node's eligibility from the synced state.
func (h *ProxyHealth) SyncDone(r proxier.SyncResult) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.State != nil {
		h.nodeEligible = !r.State.Node.Deleting
	}
	if r.Err != nil {
		if h.oldestPending.IsZero() {
			h.oldestPending = r.Start
		}
		return
	}
	h.oldestPending = time.Time{}
	h.lastUpdated = r.Start.Add(r.Duration)
}

// Healthy reports whether the data plane keeps up, ignoring the node's eligibility
// (this is what /livez answers).
func (h *ProxyHealth) Healthy() bool {
	ok, _, _ := h.status()
	return ok
}

// NodeEligible reports whether load balancers may send traffic to this node: false
// once its Node object is being deleted.
func (h *ProxyHealth) NodeEligible() bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.nodeEligible
}

func (h *ProxyHealth) status() (healthy bool, lastUpdated, now time.Time) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	now = h.clock.Now()
	healthy = h.oldestPending.IsZero() || now.Sub(h.oldestPending) < h.timeout
	return healthy, h.lastUpdated, now
}

// Handler serves /healthz and /livez.
func (h *ProxyHealth) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", h.serveHealthz)
	mux.HandleFunc("/livez", h.serveLivez)
	return mux
}

// serveHealthz answers 200 when the proxy is healthy and the node eligible, else 503.
// As in kube-proxy, a healthy answer reports lastUpdated as the current time.
func (h *ProxyHealth) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	healthy, last, now := h.status()
	eligible := h.NodeEligible()
	code := h.respond(w, healthy && eligible, h.healthzTotal)
	if code == http.StatusOK {
		last = now
	}
	fmt.Fprintf(w, `{"lastUpdated": %q,"currentTime": %q, "nodeEligible": %t}`, timeString(last), timeString(now), eligible)
}

// serveLivez is serveHealthz without the node's eligibility: a node being drained
// must not get its proxy restarted.
func (h *ProxyHealth) serveLivez(w http.ResponseWriter, _ *http.Request) {
	healthy, last, now := h.status()
	if h.respond(w, healthy, h.livezTotal) == http.StatusOK {
		last = now
	}
	fmt.Fprintf(w, `{"lastUpdated": %q,"currentTime": %q}`, timeString(last), timeString(now))
}

func (h *ProxyHealth) respond(w http.ResponseWriter, ok bool, counter *prometheus.CounterVec) int {
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	counter.WithLabelValues(fmt.Sprint(code)).Inc()
	setJSONHeaders(w)
	w.WriteHeader(code)
	return code
}

func setJSONHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
}

// timeString formats like kube-proxy (time.Time's String), without the monotonic
// clock reading.
func timeString(t time.Time) string { return t.Round(0).String() }
