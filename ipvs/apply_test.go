package ipvs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kproxy/kproxy/proxier"
)

// batchPlan is a cold plan's shape: one virtual server, n real servers, m addresses.
func batchPlan(n, m int) []Op {
	vs := vsOf("10.96.9.1:80/tcp")
	ops := []Op{{Action: EnsureDevice}, {Action: AddVirtualServer, Server: vs, Key: vs.VSKey}}
	for i := range n {
		ops = append(ops, Op{Action: AddRealServer, Server: vs, Key: vs.VSKey,
			Real: RealServer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 244, byte(i >> 8), byte(i)}), 80), Weight: 1}})
	}
	for i := range m {
		ops = append(ops, Op{Action: BindAddress, Addr: netip.AddrFrom4([4]byte{10, 96, 9, byte(i + 1)})})
	}
	return ops
}

func TestApplyBatchesRuns(t *testing.T) {
	k := &Fake{}
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ops"}, []string{"op"})
	if err := Apply(context.Background(), withMetrics(k, vec), nil, batchPlan(300, 10), logr.Discard()); err != nil {
		t.Fatal(err)
	}
	st := k.Stats()
	// Runs of one go one by one; 300 real servers in batches of MaxBatch; 10 addresses.
	if st.Batches != 3 || st.Calls[OpAddDestination] != 300 || st.Calls[OpAddAddress] != 10 || st.Calls[OpAddService] != 1 {
		t.Errorf("stats %+v, want 3 batches (256 + 44 real servers, 10 addresses) and every op counted", st)
	}
	if n := testutil.ToFloat64(vec.WithLabelValues(OpAddDestination)); n != 300 {
		t.Errorf("metric counts %v real server additions, want 300: batches count each operation", n)
	}
	if vs := k.Snapshot(proxier.IPv4).Servers[parseKey("10.96.9.1:80/tcp")]; vs == nil || len(vs.Reals) != 300 {
		t.Errorf("virtual server after the plan: %v", vs)
	}
}

// TestApplyStopsAfterTheFailedBatch: the kernel goes on past a failed operation within
// a batch, Apply does not start the next one, and the error says both where it failed
// and how far the batch went.
func TestApplyStopsAfterTheFailedBatch(t *testing.T) {
	k := &Fake{}
	adds := 0
	k.Hook = func(op, object string) error {
		if op == OpAddDestination {
			if adds++; adds == 5 {
				return kernelErr(op, object, syscall.ENOMEM)
			}
		}
		return nil
	}
	ops := batchPlan(300, 10)
	err := Apply(context.Background(), k, nil, ops, logr.Discard())
	var ae *ApplyError
	if !errors.As(err, &ae) || !errors.Is(err, syscall.ENOMEM) {
		t.Fatalf("Apply = %v, want an *ApplyError wrapping ENOMEM", err)
	}
	if ae.Applied != 6 || ae.Attempted != 2+MaxBatch || ae.Total != len(ops) || ae.Op.Action != AddRealServer {
		t.Errorf("ApplyError %+v: want the 5th real server (op 6) failed, the first batch (to op %d) attempted", ae, 2+MaxBatch)
	}
	snap := k.Snapshot(proxier.IPv4)
	if vs := snap.Servers[parseKey("10.96.9.1:80/tcp")]; vs == nil || len(vs.Reals) != MaxBatch-1 {
		t.Errorf("real servers after the failed batch: %d, want %d", len(vs.Reals), MaxBatch-1)
	}
	if len(snap.Addresses) != 0 || k.Stats().Batches != 1 {
		t.Errorf("Apply went on after the failed batch: %d addresses bound, %d batches", len(snap.Addresses), k.Stats().Batches)
	}
	want := fmt.Sprintf("plan stopped after 6 of %d operations", len(ops))
	if got := err.Error(); !strings.Contains(got, want) {
		t.Errorf("error %q does not say %q", got, want)
	}
}
