package healthcheck

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/kproxy/kproxy/proxier"
)

type healthBody struct {
	LastUpdated  string `json:"lastUpdated"`
	CurrentTime  string `json:"currentTime"`
	NodeEligible *bool  `json:"nodeEligible"`
}

func get(t *testing.T, h http.Handler, path string) (int, healthBody) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q", path, ct)
	}
	if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("%s: missing X-Content-Type-Options: nosniff", path)
	}
	var b healthBody
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatalf("%s: body %q is not JSON: %v", path, rec.Body.String(), err)
	}
	return rec.Code, b
}

func nodeState(deleting bool) *proxier.State {
	return proxier.NewState(proxier.Node{Name: "n1", Deleting: deleting})
}

func TestProxyHealth(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clk := testingclock.NewFakePassiveClock(start)
	h := NewProxyHealth(ProxyHealthOptions{HealthTimeout: 60 * time.Second, Clock: clk})
	handler := h.Handler()
	expect := func(step string, healthz, livez int, eligible bool) healthBody {
		t.Helper()
		code, body := get(t, handler, "/healthz")
		if code != healthz {
			t.Errorf("%s: /healthz = %d, want %d", step, code, healthz)
		}
		if body.NodeEligible == nil || *body.NodeEligible != eligible {
			t.Errorf("%s: nodeEligible = %v, want %v", step, body.NodeEligible, eligible)
		}
		if body.CurrentTime != clk.Now().String() {
			t.Errorf("%s: currentTime %q, want %q", step, body.CurrentTime, clk.Now())
		}
		if code == http.StatusOK && body.LastUpdated != body.CurrentTime {
			t.Errorf("%s: a healthy answer reports lastUpdated = currentTime, got %q", step, body.LastUpdated)
		}
		code, lb := get(t, handler, "/livez")
		if code != livez {
			t.Errorf("%s: /livez = %d, want %d", step, code, livez)
		}
		if lb.NodeEligible != nil {
			t.Errorf("%s: /livez must not report nodeEligible", step)
		}
		return body
	}

	expect("starting up", 200, 200, true)

	// A change is queued and not applied: healthy until the timeout, then not.
	clk.SetTime(start.Add(time.Second))
	h.SyncQueued(clk.Now())
	clk.SetTime(start.Add(60 * time.Second))
	expect("pending for 59s", 200, 200, true)
	h.SyncQueued(clk.Now()) // a later change does not move the oldest pending time
	clk.SetTime(start.Add(61 * time.Second))
	b := expect("pending for 60s", 503, 503, true)
	if b.LastUpdated != (time.Time{}).String() {
		t.Errorf("never synced: lastUpdated %q", b.LastUpdated)
	}

	// A successful sync clears it and records when the rules were last written.
	synced := start.Add(62 * time.Second)
	h.SyncDone(proxier.SyncResult{State: nodeState(false), Start: synced, Duration: time.Second})
	clk.SetTime(start.Add(70 * time.Second))
	expect("synced", 200, 200, true)
	if !h.Healthy() || !h.NodeEligible() {
		t.Error("Healthy/NodeEligible disagree with /healthz")
	}

	// A failing sync with nothing else pending goes unhealthy after the timeout too.
	failed := start.Add(80 * time.Second)
	h.SyncDone(proxier.SyncResult{State: nodeState(false), Start: failed, Err: errors.New("restore failed")})
	clk.SetTime(failed.Add(59 * time.Second))
	expect("failing for 59s", 200, 200, true)
	clk.SetTime(failed.Add(60 * time.Second))
	b = expect("failing for 60s", 503, 503, true)
	if want := synced.Add(time.Second).String(); b.LastUpdated != want {
		t.Errorf("unhealthy: lastUpdated %q, want the end of the last good sync %q", b.LastUpdated, want)
	}
	h.SyncDone(proxier.SyncResult{State: nodeState(false), Start: clk.Now()})
	expect("recovered", 200, 200, true)

	// A node being deleted fails /healthz (so load balancers drain it) but not /livez.
	h.SyncDone(proxier.SyncResult{State: nodeState(true), Start: clk.Now()})
	expect("node deleting", 503, 200, false)
	if h.NodeEligible() {
		t.Error("NodeEligible() with a deleting node")
	}
	// Even when the sync that saw it failed.
	h.SyncDone(proxier.SyncResult{State: nodeState(false), Start: clk.Now(), Err: errors.New("x")})
	expect("node back", 200, 200, true)

	if got := testutil.ToFloat64(h.healthzTotal.WithLabelValues("503")); got != 3 {
		t.Errorf("kubeproxy_proxy_healthz_total{code=503} = %v, want 3", got)
	}
	if got := testutil.ToFloat64(h.livezTotal.WithLabelValues("200")); got != 7 {
		t.Errorf("kubeproxy_proxy_livez_total{code=200} = %v, want 7", got)
	}
	if n := len(h.Collectors()); n != 2 {
		t.Errorf("Collectors() = %d", n)
	}
}

func TestProxyHealthDefaults(t *testing.T) {
	h := NewProxyHealth(ProxyHealthOptions{})
	if h.timeout != 60*time.Second {
		t.Errorf("default timeout %v", h.timeout)
	}
	h.SyncQueued(time.Now().Add(-59 * time.Second))
	if !h.Healthy() {
		t.Error("pending for 59s with the default 60s timeout must be healthy")
	}
	h.SyncQueued(time.Now()) // does not reset
	h2 := NewProxyHealth(ProxyHealthOptions{})
	h2.SyncQueued(time.Now().Add(-61 * time.Second))
	if h2.Healthy() {
		t.Error("pending for 61s must be unhealthy")
	}
}
