package proxier

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"
)

// RunnerOptions configures a Runner. Zero values take kube-proxy's defaults, except
// MinSyncPeriod, where zero means no minimum.
type RunnerOptions struct {
	// MinSyncPeriod is the shortest time between the starts of two syncs; changes that
	// arrive sooner are coalesced into the next sync. 0 syncs as soon as a change
	// arrives; a negative value asks for kube-proxy's default of 1s.
	MinSyncPeriod time.Duration
	// SyncPeriod is the longest time between two full syncs, which repair anything
	// changed behind the proxy's back. Default 30s.
	SyncPeriod time.Duration
	// InitialBackoff and MaxBackoff bound the exponential delay before retrying a
	// failed sync. Defaults 1s and SyncPeriod.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// Observers are told about queued changes and every sync attempt (metrics,
	// health checks).
	Observers []SyncObserver
	Logger    logr.Logger
	// Clock is for tests; default the real clock.
	Clock clock.WithTicker
}

// SyncObserver watches a Runner. Calls are made from the Runner's goroutine and must
// not block.
type SyncObserver interface {
	// SyncQueued is called when the Runner learns of a change it has not applied yet.
	SyncQueued(at time.Time)
	// SyncDone is called after every sync attempt.
	SyncDone(result SyncResult)
}

// SyncResult describes one sync attempt.
type SyncResult struct {
	State    *State
	Changes  ChangeSet
	Start    time.Time
	Duration time.Duration
	// Err is nil when the data plane now matches State.
	Err error
}

// Runner drives a Proxier from a Source: it syncs when the model changes, no more often
// than MinSyncPeriod, does a full sync at least every SyncPeriod, and retries failures
// with exponential backoff, forcing a full sync so a half-applied change is repaired.
//
// A Runner is a controller-runtime Runnable that runs on every node (no leader
// election); it can equally be started with a plain goroutine.
type Runner struct {
	source  Source
	proxier Proxier
	opts    RunnerOptions
	clock   clock.WithTicker
	log     logr.Logger
}

// NewRunner returns a Runner; call Start to run it.
func NewRunner(source Source, p Proxier, opts RunnerOptions) *Runner {
	if opts.MinSyncPeriod < 0 {
		opts.MinSyncPeriod = time.Second
	}
	if opts.SyncPeriod <= 0 {
		opts.SyncPeriod = 30 * time.Second
	}
	if opts.InitialBackoff <= 0 {
		opts.InitialBackoff = time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = opts.SyncPeriod
	}
	c := opts.Clock
	if c == nil {
		c = clock.RealClock{}
	}
	return &Runner{source: source, proxier: p, opts: opts, clock: c, log: opts.Logger}
}

// NeedLeaderElection tells controller-runtime that every node runs its own Runner.
func (r *Runner) NeedLeaderElection() bool { return false }

// runState is the Runner's bookkeeping between two wake-ups.
type runState struct {
	pending      bool      // a change arrived since the last snapshot
	forceFull    bool      // the next sync must be full (first one, or after a failure)
	lastStart    time.Time // start of the last sync attempt
	nextPeriodic time.Time
	retryAt      time.Time // zero unless a failed sync awaits its retry
	backoff      time.Duration
	carried      ChangeSet // trigger times of failed syncs, so latency is measured from the first change
}

// Start waits until the source is initialized, then syncs until ctx is cancelled. It
// returns nil on cancellation: leaving the rules in place is the point, so that traffic
// keeps flowing while the proxy restarts.
func (r *Runner) Start(ctx context.Context) error {
	select {
	case <-r.source.Initialized():
	case <-ctx.Done():
		return nil
	}
	st := runState{pending: true, forceFull: true, backoff: r.opts.InitialBackoff}
	st.nextPeriodic = r.clock.Now().Add(r.opts.SyncPeriod)
	for {
		now := r.clock.Now()
		due := r.nextDue(&st)
		if !due.After(now) {
			r.syncOnce(ctx, &st, now)
			continue
		}
		timer := r.clock.NewTimer(due.Sub(now))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-r.source.Changed():
			st.pending = true
			for _, o := range r.opts.Observers {
				o.SyncQueued(r.clock.Now())
			}
		case <-timer.C():
		}
		timer.Stop()
	}
}

// nextDue returns when the next sync should start: a retry waits for its backoff, a
// change for MinSyncPeriod since the last start, and the periodic full sync for
// SyncPeriod since the last success.
func (r *Runner) nextDue(st *runState) time.Time {
	if !st.retryAt.IsZero() {
		return st.retryAt
	}
	due := st.nextPeriodic
	if st.pending {
		if earliest := st.lastStart.Add(r.opts.MinSyncPeriod); earliest.Before(due) {
			due = earliest
		}
	}
	return due
}

func (r *Runner) syncOnce(ctx context.Context, st *runState, now time.Time) {
	state, changes := r.source.Snapshot()
	changes = st.carried.Merge(changes)
	if st.forceFull || !now.Before(st.nextPeriodic) {
		changes.Full = true
		changes.Services = nil
	}
	st.pending = false
	if changes.Empty() {
		return // the notifications were for changes that cancelled out
	}
	st.lastStart = now
	err := r.proxier.Sync(ctx, state, changes)
	end := r.clock.Now()
	res := SyncResult{State: state, Changes: changes, Start: now, Duration: end.Sub(now), Err: err}
	for _, o := range r.opts.Observers {
		o.SyncDone(res)
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		r.log.Error(err, "Sync failed; retrying with a full sync", "backoff", st.backoff, "generation", state.Generation)
		st.forceFull = true
		st.carried = ChangeSet{TriggerTimes: changes.TriggerTimes}
		st.retryAt = end.Add(st.backoff)
		st.backoff = min(2*st.backoff, r.opts.MaxBackoff)
		return
	}
	r.log.V(2).Info("Synced", "full", changes.Full, "services", len(changes.Services),
		"generation", state.Generation, "duration", res.Duration)
	st.forceFull = false
	st.carried = ChangeSet{}
	st.retryAt = time.Time{}
	st.backoff = r.opts.InitialBackoff
	st.nextPeriodic = end.Add(r.opts.SyncPeriod)
}
