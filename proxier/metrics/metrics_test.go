package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestEveryCollectorRegistersAndPendingReadsItsSource(t *testing.T) {
	m := New()
	reg := prometheus.NewRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatalf("registering: %v", err)
	}
	if got := testutil.ToFloat64(m.EndpointChangesPending); got != 0 {
		t.Errorf("pending before a source is set = %v, want 0", got)
	}
	n := 3
	m.SetPendingSource(func() int { return n })
	if got := testutil.ToFloat64(m.ServiceChangesPending); got != 3 {
		t.Errorf("service changes pending = %v, want 3", got)
	}
	if got := testutil.ToFloat64(m.EndpointChangesPending); got != 3 {
		t.Errorf("endpoint changes pending = %v, want 3", got)
	}
}
