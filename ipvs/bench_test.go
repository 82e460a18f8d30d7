package ipvs

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/kproxy/kproxy/proxier"
)

// cloneSnapshot deep-copies a snapshot, so Plan compares distinct values as it does
// against one read from the kernel.
func cloneSnapshot(s *Snapshot) *Snapshot {
	c := NewSnapshot(s.Family)
	c.Device, c.Glue = s.Device, s.Glue
	for k, vs := range s.Servers {
		c.Servers[k] = vs.Clone()
	}
	for a := range s.Addresses {
		c.Addresses[a] = struct{}{}
	}
	for n, set := range s.Sets {
		e := make(map[SetEntry]struct{}, len(set.Entries))
		for m := range set.Entries {
			e[m] = struct{}{}
		}
		c.Sets[n] = &SetState{Spec: set.Spec, Entries: e}
	}
	return c
}

func BenchmarkDesired(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		s := bigState(n)
		opts := PlanOptions{HostAddresses: hostAddrs()}
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Desired(s, opts)
			}
		})
	}
}

func BenchmarkPlan(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		d := Desired(bigState(n), PlanOptions{HostAddresses: hostAddrs()})
		o := cloneSnapshot(d)
		b.Run(fmt.Sprintf("services=%d/unchanged", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if ops := Plan(d, o); len(ops) != 0 {
					b.Fatalf("%d ops", len(ops))
				}
			}
		})
		b.Run(fmt.Sprintf("services=%d/cold", n), func(b *testing.B) {
			b.ReportAllocs()
			empty := NewSnapshot(proxier.IPv4)
			for b.Loop() {
				Plan(d, empty)
			}
		})
	}
}

// BenchmarkSyncOneChange measures a partial sync replacing one endpoint among 10,000
// Services with 10 endpoints each, on the Fake.
func BenchmarkSyncOneChange(b *testing.B) {
	h := newHarness(b, PlanOptions{}, nil)
	s := bigState(10_000)
	h.sync(b, s, proxier.FullSync())
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		b.StopTimer()
		next, cs := replaceEndpoint(s, (i*7919)%10_000, netip.AddrFrom4([4]byte{10, 251, byte(i >> 8), byte(i)}))
		b.StartTimer()
		h.sync(b, next, cs)
		s = next
	}
}

// BenchmarkSyncFull measures a periodic full resync of an unchanged 10,000-Service
// state on the Fake: build, read back, diff, no writes.
func BenchmarkSyncFull(b *testing.B) {
	h := newHarness(b, PlanOptions{}, nil)
	s := bigState(10_000)
	h.sync(b, s, proxier.FullSync())
	b.ReportAllocs()
	for b.Loop() {
		if err := h.p.Sync(context.Background(), s, proxier.FullSync()); err != nil {
			b.Fatal(err)
		}
	}
}
