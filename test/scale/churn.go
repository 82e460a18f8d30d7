package scale

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	discovery "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// churnWorkers update slices in parallel; each owns the Services whose index is its
// number modulo churnWorkers, so no two writers ever race on one object.
const churnWorkers = 8

// ChurnStats counts what a churn run did.
type ChurnStats struct {
	// Updates is how many EndpointSlice updates the apiserver accepted.
	Updates int64 `json:"updates"`
	// Late is how many ticks found every worker busy (the apiserver could not keep up).
	Late int64 `json:"late"`
	// Errors is how many updates failed.
	Errors int64 `json:"errors"`
	// Rate is Updates per second of churn.
	Rate float64 `json:"rate"`
}

// churner replaces one endpoint address of a random workload Service per tick: the
// shape of a pod being replaced. It changes no endpoint count, so repeated runs see
// the same cluster size.
type churner struct {
	c       *Cluster
	counter atomic.Int64
}

// run updates rate slices per second until ctx ends, and reports what it did. Updates
// in flight when ctx ends complete under reqCtx.
func (ch *churner) run(ctx, reqCtx context.Context, rate float64, seed uint64) ChurnStats {
	n := ch.c.Services()
	var st ChurnStats
	if n == 0 || rate <= 0 {
		return st
	}
	work := make([]chan struct{}, churnWorkers)
	var updates, late, errs atomic.Int64
	var wg sync.WaitGroup
	for w := range churnWorkers {
		work[w] = make(chan struct{}, 4)
		r := rand.New(rand.NewPCG(seed, uint64(w)))
		owned := (n - w + churnWorkers - 1) / churnWorkers // indexes w, w+W, …
		wg.Go(func() {
			for range work[w] {
				if owned <= 0 {
					continue
				}
				i := w + churnWorkers*r.IntN(owned)
				if err := ch.update(reqCtx, i, r); err != nil {
					if reqCtx.Err() == nil {
						errs.Add(1)
					}
					continue
				}
				updates.Add(1)
			}
		})
	}
	start := time.Now()
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	k := 0
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			select {
			case work[k%churnWorkers] <- struct{}{}:
			default:
				late.Add(1)
			}
			k++
		}
	}
	tick.Stop()
	for _, c := range work {
		close(c)
	}
	wg.Wait()
	st.Updates, st.Late, st.Errors = updates.Load(), late.Load(), errs.Load()
	st.Rate = float64(st.Updates) / time.Since(start).Seconds()
	return st
}

// update gives one endpoint of Service i's slice a fresh address.
func (ch *churner) update(ctx context.Context, i int, r *rand.Rand) error {
	ch.c.mu.Lock()
	sl := ch.c.slices[i]
	ch.c.mu.Unlock()
	next := sl.DeepCopy()
	j := r.IntN(len(next.Endpoints))
	for {
		ip := nthAddr(churnPodBase, int(ch.counter.Add(1))%churnPodSize).String()
		if !slices.ContainsFunc(next.Endpoints, func(e discovery.Endpoint) bool { return e.Addresses[0] == ip }) {
			next.Endpoints[j].Addresses = []string{ip}
			break
		}
	}
	stampTrigger(next, time.Now())
	err := ch.c.Client.Update(ctx, next)
	if apierrors.IsConflict(err) {
		// Someone else wrote it (never the harness itself): start from the stored object.
		if err := ch.c.Client.Get(ctx, client.ObjectKeyFromObject(sl), next); err != nil {
			return err
		}
		next.Endpoints[j%len(next.Endpoints)].Addresses = []string{nthAddr(churnPodBase, int(ch.counter.Add(1))%churnPodSize).String()}
		stampTrigger(next, time.Now())
		err = ch.c.Client.Update(ctx, next)
	}
	if err != nil {
		return err
	}
	ch.c.mu.Lock()
	ch.c.slices[i] = next
	ch.c.mu.Unlock()
	return nil
}
