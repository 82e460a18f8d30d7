package ipvs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

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

// wideBatchPlan is a cold plan for n virtual servers 10.96.0.1.. with 10 real servers
// each and their addresses.
func wideBatchPlan(n int) []Op {
	var ops []Op
	var vss []*VirtualServer
	for i := range n {
		vs := vsOf(fmt.Sprintf("10.96.%d.%d:80/tcp", i/250, i%250+1))
		vss = append(vss, vs)
		ops = append(ops, Op{Action: AddVirtualServer, Server: vs, Key: vs.VSKey})
	}
	for i, vs := range vss {
		for j := range 10 {
			ops = append(ops, Op{Action: AddRealServer, Server: vs, Key: vs.VSKey,
				Real: RealServer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), byte(j)}), 80), Weight: 1}})
		}
	}
	for _, vs := range vss {
		ops = append(ops, Op{Action: BindAddress, Addr: vs.Addr})
	}
	return ops
}

// orderChecker fails the test when an address is bound before its virtual server has
// all its real servers (want per address), seen from the Fake's hook.
func orderChecker(t *testing.T, want int) func(op, object string) error {
	reals := map[string]int{}
	return func(op, object string) error { // called under the Fake's lock
		switch op {
		case OpAddDestination:
			addr, _, _ := strings.Cut(object, ":")
			reals[addr]++
		case OpAddAddress:
			if reals[object] != want {
				t.Errorf("address %s bound with %d of its %d real servers added", object, reals[object], want)
			}
		}
		return nil
	}
}

// gatedFake holds back the batch that carries the last real server until the first
// address is bound: Apply must bind on another goroutine while it adds real servers.
type gatedFake struct {
	*Fake
	last     netip.AddrPort
	bound    chan struct{}
	once     sync.Once
	overlaps bool
}

func (g *gatedFake) Batch(ctx context.Context, ops []Op) []error {
	if ops[0].Action == AddRealServer && ops[len(ops)-1].Real.Addr == g.last {
		select {
		case <-g.bound:
			g.overlaps = true
		case <-time.After(5 * time.Second):
		}
	}
	errs := g.Fake.Batch(ctx, ops)
	if ops[0].Action == BindAddress {
		g.once.Do(func() { close(g.bound) })
	}
	return errs
}

func TestApplyBindsAddressesWhileAddingRealServers(t *testing.T) {
	ops := wideBatchPlan(100) // 1,000 real servers: four batches
	k := &gatedFake{Fake: &Fake{}, bound: make(chan struct{})}
	k.last = ops[len(ops)-101].Real.Addr
	k.Hook = orderChecker(t, 10)
	if _, err := k.EnsureDevice(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := Apply(context.Background(), k, nil, ops, logr.Discard()); err != nil {
		t.Fatal(err)
	}
	if !k.overlaps {
		t.Errorf("no address was bound before the last real servers were added")
	}
	snap := k.Snapshot(proxier.IPv4)
	if len(snap.Addresses) != 100 || len(snap.Servers) != 100 {
		t.Errorf("after the plan: %d addresses, %d virtual servers; want 100 each", len(snap.Addresses), len(snap.Servers))
	}
}

// TestApplyFailureStopsTheBinder: a real server batch fails; addresses of complete
// virtual servers may be bound, never one of the failed or later ones.
func TestApplyFailureStopsTheBinder(t *testing.T) {
	for _, failAt := range []int{1, 300, 999} {
		t.Run(fmt.Sprint(failAt), func(t *testing.T) {
			ops := wideBatchPlan(100)
			k := &Fake{}
			check := orderChecker(t, 10)
			adds := 0
			k.Hook = func(op, object string) error {
				if op == OpAddDestination {
					if adds++; adds == failAt {
						return kernelErr(op, object, syscall.ENOMEM)
					}
				}
				return check(op, object)
			}
			if _, err := k.EnsureDevice(context.Background()); err != nil {
				t.Fatal(err)
			}
			err := Apply(context.Background(), k, nil, ops, logr.Discard())
			var ae *ApplyError
			if !errors.As(err, &ae) || ae.Op.Action != AddRealServer || !errors.Is(err, syscall.ENOMEM) {
				t.Fatalf("Apply = %v, want the failed real server", err)
			}
			failedVS := (failAt - 1) / 10
			for a := range k.Snapshot(proxier.IPv4).Addresses {
				if i := int(a.As4()[2])*250 + int(a.As4()[3]) - 1; i >= failedVS {
					t.Errorf("address %s of virtual server %d bound; the failure was in virtual server %d", a, i, failedVS)
				}
			}
		})
	}
}

// TestApplyBindWaitsForRealServerUpdates: an address whose virtual server still has a
// real server update pending is not bound, even when the additions are past it.
func TestApplyBindWaitsForRealServerUpdates(t *testing.T) {
	ctx := context.Background()
	k := &Fake{}
	old := vsOf("10.96.0.1:80/tcp", "10.244.9.1:80/1")
	if _, err := k.EnsureDevice(ctx); err != nil {
		t.Fatal(err)
	}
	if err := k.AddVirtualServer(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := k.AddRealServer(ctx, old.VSKey, old.Reals[0]); err != nil {
		t.Fatal(err)
	}
	ops := wideBatchPlan(30)
	for i := range ops {
		ops[i] = shiftAddr(ops[i], 10) // 10.96.0.11 and up: after 10.96.0.1
	}
	updated := false
	check := orderChecker(t, 10)
	k.Hook = func(op, object string) error {
		if op == OpUpdateDestination {
			updated = true
		}
		if op == OpAddAddress && object == "10.96.0.1" {
			if !updated {
				t.Errorf("10.96.0.1 bound before its real server update")
			}
			return nil
		}
		return check(op, object)
	}
	upd := old.Reals[0]
	upd.Weight = 2
	bindStart, _ := runOf(ops, BindAddress)
	plan := slices.Concat(ops[:bindStart],
		[]Op{{Action: UpdateRealServer, Server: old, Key: old.VSKey, Real: upd}, {Action: BindAddress, Addr: old.Addr}},
		ops[bindStart:])
	if !slices.IsSortedFunc(plan, compareOps) {
		t.Fatalf("test plan out of order:\n%s", strings.Join(opStrings(plan), "\n"))
	}
	if err := Apply(ctx, k, nil, plan, logr.Discard()); err != nil {
		t.Fatal(err)
	}
	if n := len(k.Snapshot(proxier.IPv4).Addresses); n != 31 {
		t.Errorf("%d addresses bound, want 31", n)
	}
}

// shiftAddr moves an op's virtual server and address up by d in the last byte.
func shiftAddr(op Op, d byte) Op {
	shift := func(a netip.Addr) netip.Addr {
		if !a.IsValid() {
			return a
		}
		b := a.As4()
		b[3] += d
		return netip.AddrFrom4(b)
	}
	op.Addr = shift(op.Addr)
	op.Key.Addr = shift(op.Key.Addr)
	if op.Server != nil {
		vs := op.Server.Clone()
		vs.Addr = shift(vs.Addr)
		op.Server = vs
	}
	return op
}
