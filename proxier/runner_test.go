package proxier

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"k8s.io/utils/clock"
	testingclock "k8s.io/utils/clock/testing"
)

// The Runner is tested by recording everything it does, in order, on one channel:
// "queued" (SyncQueued), "sync" (Proxier.Sync, followed by "done" from SyncDone) and
// "timer" (the runner created its wait timer and is about to block on it). Because the
// Runner is a single goroutine, this sequence is deterministic; the test steps the fake
// clock only after a "timer" event, when the timer it will fire is registered.

type runnerEvent struct {
	kind    string        // "queued", "sync", "done", "timer"
	at      time.Duration // fake time since the start of the test
	wait    time.Duration // timer: how long the runner waits
	gen     uint64        // sync/done: State.Generation
	changes ChangeSet     // sync/done
	result  SyncResult    // done
}

func (e runnerEvent) String() string {
	switch e.kind {
	case "timer":
		return fmt.Sprintf("timer(%v) at %v", e.wait, e.at)
	case "sync", "done":
		return fmt.Sprintf("%s(full=%v services=%v) at %v", e.kind, e.changes.Full, changed(e.changes), e.at)
	}
	return fmt.Sprintf("%s at %v", e.kind, e.at)
}

// eventClock is a FakeClock that reports every timer the Runner creates.
type eventClock struct {
	*testingclock.FakeClock
	h *runnerHarness
}

func (c eventClock) NewTimer(d time.Duration) clock.Timer {
	tm := c.FakeClock.NewTimer(d)
	c.h.emit(runnerEvent{kind: "timer", wait: d})
	return tm
}

// fakeSource is a Source whose changes the test pushes by hand.
type fakeSource struct {
	mu      sync.Mutex
	state   *State
	pending ChangeSet
	changed chan struct{}
	init    chan struct{}
}

func newFakeSource() *fakeSource {
	return &fakeSource{
		state:   NewState(Node{Name: thisNode}),
		changed: make(chan struct{}, 1),
		init:    make(chan struct{}),
	}
}

func (s *fakeSource) Snapshot() (*State, ChangeSet) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := s.pending
	s.pending = ChangeSet{}
	if !cs.Empty() {
		next := NewState(s.state.Node)
		next.Generation = s.state.Generation + 1
		s.state = next
	}
	return s.state, cs
}

func (s *fakeSource) Changed() <-chan struct{}     { return s.changed }
func (s *fakeSource) Initialized() <-chan struct{} { return s.init }

// push records a change and notifies, as the Builder does.
func (s *fakeSource) push(cs ChangeSet) {
	s.mu.Lock()
	s.pending = s.pending.Merge(cs)
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// changeOf is a partial change set naming services "ns/<name>:http/tcp".
func changeOf(services ...string) ChangeSet {
	cs := ChangeSet{Services: map[ServicePortName]struct{}{}}
	for _, s := range services {
		cs.Services[portName(s, "http", ProtocolTCP)] = struct{}{}
	}
	return cs
}

type runnerHarness struct {
	t      *testing.T
	start  time.Time
	clock  *testingclock.FakeClock
	src    *fakeSource
	events chan runnerEvent

	mu      sync.Mutex
	results []error // what the next Syncs return; nil when exhausted
	// syncTook is how long each Sync takes on the fake clock.
	syncTook time.Duration
	// duringSync, when set, runs inside every Sync call: the Runner is busy then and
	// reads no notification and takes no snapshot.
	duringSync func()

	cancel context.CancelFunc
	done   chan error
}

func newRunnerHarness(t *testing.T, opts RunnerOptions) *runnerHarness {
	t.Helper()
	src := newFakeSource()
	h := newRunnerHarnessFor(t, src, opts)
	h.src = src
	return h
}

// newRunnerHarnessFor runs a Runner on any Source, e.g. a real Builder.
func newRunnerHarnessFor(t *testing.T, src Source, opts RunnerOptions) *runnerHarness {
	t.Helper()
	h := &runnerHarness{
		t:      t,
		start:  time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		events: make(chan runnerEvent, 1000),
		done:   make(chan error, 1),
	}
	h.clock = testingclock.NewFakeClock(h.start)
	opts.Clock = eventClock{FakeClock: h.clock, h: h}
	opts.Observers = append(opts.Observers, h)
	r := NewRunner(src, ProxierFunc(h.sync), opts)
	if r.NeedLeaderElection() {
		t.Errorf("NeedLeaderElection() = true; every node runs its own Runner")
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- r.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			t.Errorf("Runner did not stop")
		}
	})
	return h
}

func (h *runnerHarness) emit(e runnerEvent) {
	e.at = h.clock.Now().Sub(h.start)
	h.events <- e
}

func (h *runnerHarness) sync(_ context.Context, s *State, cs ChangeSet) error {
	h.emit(runnerEvent{kind: "sync", gen: s.Generation, changes: cs})
	h.mu.Lock()
	var err error
	if len(h.results) > 0 {
		err, h.results = h.results[0], h.results[1:]
	}
	took, during := h.syncTook, h.duringSync
	h.mu.Unlock()
	if during != nil {
		during()
	}
	if took > 0 {
		h.clock.Step(took)
	}
	return err
}

func (h *runnerHarness) SyncQueued(at time.Time) {
	if !at.Equal(h.clock.Now()) {
		h.t.Errorf("SyncQueued(%v), want the current time %v", at, h.clock.Now())
	}
	h.emit(runnerEvent{kind: "queued"})
}

func (h *runnerHarness) SyncDone(r SyncResult) {
	h.emit(runnerEvent{kind: "done", gen: r.State.Generation, changes: r.Changes, result: r})
}

// failNext makes the next n Syncs fail.
func (h *runnerHarness) failNext(n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range n {
		h.results = append(h.results, fmt.Errorf("injected failure %d", i+1))
	}
}

func (h *runnerHarness) initialize() { close(h.src.init) }

func (h *runnerHarness) next() runnerEvent {
	h.t.Helper()
	select {
	case e := <-h.events:
		return e
	case <-time.After(10 * time.Second):
		h.t.Fatalf("no runner event within 10s")
		return runnerEvent{}
	}
}

func (h *runnerHarness) expect(kind string) runnerEvent {
	h.t.Helper()
	e := h.next()
	if e.kind != kind {
		h.t.Fatalf("event %v, want %s", e, kind)
	}
	return e
}

// expectTimer expects the runner to block waiting for d.
func (h *runnerHarness) expectTimer(d time.Duration) {
	h.t.Helper()
	if e := h.expect("timer"); e.wait != d {
		h.t.Fatalf("runner waits %v at %v, want %v", e.wait, e.at, d)
	}
}

// expectSync expects one Sync call at fake time at, with the given change set shape,
// followed by its SyncDone; it returns the sync's change set.
func (h *runnerHarness) expectSync(at time.Duration, full bool, services ...string) ChangeSet {
	h.t.Helper()
	e := h.expect("sync")
	want := changeOf(services...)
	if e.at != at || e.changes.Full != full || (!full && !maps.Equal(e.changes.Services, want.Services)) {
		h.t.Fatalf("got %v, want sync(full=%v services=%v) at %v", e, full, changed(want), at)
	}
	if full && e.changes.Services != nil {
		h.t.Errorf("full sync also names services %v", changed(e.changes))
	}
	d := h.expect("done")
	if d.gen != e.gen || d.result.Start != h.start.Add(at) {
		h.t.Errorf("SyncDone %+v does not describe the sync %v", d.result, e)
	}
	return e.changes
}

// expectQuiet checks that nothing happens for a little while of real time (used only
// where the runner must be idle, e.g. before it is initialized).
func (h *runnerHarness) expectQuiet() {
	h.t.Helper()
	select {
	case e := <-h.events:
		h.t.Fatalf("unexpected event %v", e)
	case <-time.After(50 * time.Millisecond):
	}
}

// startSynced initializes the runner and consumes its first (full) sync.
func (h *runnerHarness) startSynced(syncPeriod time.Duration) {
	h.t.Helper()
	h.initialize()
	h.expectSync(0, true)
	h.expectTimer(syncPeriod)
}

func TestRunnerWaitsUntilInitialized(t *testing.T) {
	h := newRunnerHarness(t, RunnerOptions{})
	h.src.push(changeOf("a"))
	h.clock.Step(time.Hour)
	h.expectQuiet()
	if h.clock.HasWaiters() {
		t.Errorf("runner set a timer before it was initialized")
	}

	h.initialize()
	h.expectSync(time.Hour, true)
	h.expectTimer(30 * time.Second)
}

func TestRunnerFirstSyncIsFull(t *testing.T) {
	h := newRunnerHarness(t, RunnerOptions{})
	h.src.push(changeOf("a", "b")) // a partial change set from the source...
	h.initialize()
	h.expectSync(0, true) // ...is still synced in full the first time.
	h.expectTimer(30 * time.Second)
}

func TestRunnerSyncsChangeAtOnceWithoutMinSyncPeriod(t *testing.T) {
	h := newRunnerHarness(t, RunnerOptions{MinSyncPeriod: 0})
	h.startSynced(30 * time.Second)

	h.src.push(changeOf("a"))
	h.expect("queued")
	h.expectSync(0, false, "a")
	h.expectTimer(30 * time.Second)

	h.clock.Step(5 * time.Second)
	h.src.push(changeOf("b"))
	h.expect("queued")
	h.expectSync(5*time.Second, false, "b")
	h.expectTimer(30 * time.Second)
}

func TestRunnerCoalescesBurstWithinMinSyncPeriod(t *testing.T) {
	tests := []struct {
		name string
		min  time.Duration
	}{
		{"explicit 1s", time.Second},
		{"negative means kube-proxy's default of 1s", -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newRunnerHarness(t, RunnerOptions{MinSyncPeriod: tc.min})
			h.startSynced(30 * time.Second) // last start at 0

			h.clock.Step(200 * time.Millisecond)
			h.src.push(changeOf("a"))
			h.expect("queued")
			h.expectTimer(800 * time.Millisecond) // until lastStart+1s

			h.clock.Step(300 * time.Millisecond)
			h.src.push(changeOf("b"))
			h.expect("queued")
			h.expectTimer(500 * time.Millisecond)

			h.src.push(changeOf("a", "c"))
			h.expect("queued")
			h.expectTimer(500 * time.Millisecond)

			h.clock.Step(500 * time.Millisecond)
			h.expectSync(time.Second, false, "a", "b", "c") // one sync for the burst
			h.expectTimer(30 * time.Second)

			// A change long after the last sync goes through at once.
			h.clock.Step(5 * time.Second)
			h.src.push(changeOf("d"))
			h.expect("queued")
			h.expectSync(6*time.Second, false, "d")
			h.expectTimer(30 * time.Second)
		})
	}
}

func TestRunnerPeriodicFullSync(t *testing.T) {
	h := newRunnerHarness(t, RunnerOptions{SyncPeriod: 10 * time.Second})
	h.startSynced(10 * time.Second)

	h.clock.Step(10 * time.Second)
	h.expectSync(10*time.Second, true)
	h.expectTimer(10 * time.Second)

	// A partial sync also counts: the next full sync is SyncPeriod after it.
	h.clock.Step(4 * time.Second)
	h.src.push(changeOf("a"))
	h.expect("queued")
	h.expectSync(14*time.Second, false, "a")
	h.expectTimer(10 * time.Second)

	h.clock.Step(10 * time.Second)
	h.expectSync(24*time.Second, true)
	h.expectTimer(10 * time.Second)
}

func TestRunnerPeriodIsMeasuredFromTheEndOfASync(t *testing.T) {
	h := newRunnerHarness(t, RunnerOptions{SyncPeriod: 10 * time.Second})
	h.syncTook = 3 * time.Second
	h.initialize()
	e := h.expect("sync")
	d := h.expect("done")
	if e.at != 0 || d.result.Duration != 3*time.Second || d.result.Start != h.start || d.result.Err != nil {
		t.Errorf("SyncDone = %+v, want start 0, duration 3s, no error", d.result)
	}
	h.expectTimer(10 * time.Second)
}

func TestRunnerRetriesFailedSyncWithBackoff(t *testing.T) {
	h := newRunnerHarness(t, RunnerOptions{InitialBackoff: time.Second, MaxBackoff: 4 * time.Second})
	h.failNext(5)
	h.initialize()

	at := time.Duration(0)
	for _, backoff := range []time.Duration{1, 2, 4, 4, 4} { // doubles, capped at MaxBackoff
		h.expectSync(at, true)
		h.expectTimer(backoff * time.Second)
		h.clock.Step(backoff * time.Second)
		at += backoff * time.Second
	}
	h.expectSync(at, true) // succeeds
	h.expectTimer(30 * time.Second)

	// After a success the backoff starts over, and a failed partial sync is retried
	// in full.
	h.failNext(1)
	h.src.push(changeOf("a"))
	h.expect("queued")
	h.expectSync(at, false, "a")
	h.expectTimer(time.Second)
	h.clock.Step(time.Second)
	h.expectSync(at+time.Second, true)
	h.expectTimer(30 * time.Second)
}

func TestRunnerChangeDuringBackoffWaitsForTheRetry(t *testing.T) {
	h := newRunnerHarness(t, RunnerOptions{InitialBackoff: 2 * time.Second})
	h.startSynced(30 * time.Second)

	h.failNext(1)
	h.src.push(changeOf("a"))
	h.expect("queued")
	h.expectSync(0, false, "a")
	h.expectTimer(2 * time.Second)

	h.clock.Step(500 * time.Millisecond)
	h.src.push(changeOf("b"))
	h.expect("queued")
	h.expectTimer(1500 * time.Millisecond) // not at once: the retry is due first

	h.clock.Step(1500 * time.Millisecond)
	h.expectSync(2*time.Second, true)
	h.expectTimer(30 * time.Second)
}

func TestRunnerCarriesTriggerTimesIntoRetry(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)
	svcA := ServiceName{Namespace: testNS, Name: "a"}
	svcB := ServiceName{Namespace: testNS, Name: "b"}
	withTrigger := func(cs ChangeSet, svc ServiceName, at time.Time) ChangeSet {
		cs.TriggerTimes = map[ServiceName]time.Time{svc: at}
		return cs
	}

	h := newRunnerHarness(t, RunnerOptions{InitialBackoff: time.Second})
	h.startSynced(30 * time.Second)

	h.failNext(2)
	h.src.push(withTrigger(changeOf("a"), svcA, t0))
	h.expect("queued")
	cs := h.expectSync(0, false, "a")
	if want := map[ServiceName]time.Time{svcA: t0}; !maps.EqualFunc(cs.TriggerTimes, want, time.Time.Equal) {
		t.Errorf("first attempt TriggerTimes = %v, want %v", cs.TriggerTimes, want)
	}
	h.expectTimer(time.Second)

	// A later change for a, and one for b, arrive during the backoff.
	h.src.push(withTrigger(changeOf("a"), svcA, t0.Add(time.Minute)))
	h.expect("queued")
	h.expectTimer(time.Second)
	h.src.push(withTrigger(changeOf("b"), svcB, t0.Add(2*time.Minute)))
	h.expect("queued")
	h.expectTimer(time.Second)

	want := map[ServiceName]time.Time{svcA: t0, svcB: t0.Add(2 * time.Minute)}
	h.clock.Step(time.Second)
	if cs := h.expectSync(time.Second, true); !maps.EqualFunc(cs.TriggerTimes, want, time.Time.Equal) {
		t.Errorf("retry TriggerTimes = %v, want %v (earliest per service)", cs.TriggerTimes, want)
	}
	h.expectTimer(2 * time.Second)
	h.clock.Step(2 * time.Second)
	if cs := h.expectSync(3*time.Second, true); !maps.EqualFunc(cs.TriggerTimes, want, time.Time.Equal) {
		t.Errorf("second retry TriggerTimes = %v, want %v", cs.TriggerTimes, want)
	}
	h.expectTimer(30 * time.Second)

	// Once synced, the trigger times are not reported again.
	h.src.push(changeOf("c"))
	h.expect("queued")
	if cs := h.expectSync(3*time.Second, false, "c"); len(cs.TriggerTimes) != 0 {
		t.Errorf("TriggerTimes after a success = %v, want none", cs.TriggerTimes)
	}
	h.expectTimer(30 * time.Second)
}

func TestRunnerSkipsChangesThatCancelOut(t *testing.T) {
	t.Run("empty change set from the source", func(t *testing.T) {
		h := newRunnerHarness(t, RunnerOptions{})
		h.startSynced(30 * time.Second)

		h.clock.Step(10 * time.Second)
		h.src.push(ChangeSet{})
		h.expect("queued")
		h.expectTimer(20 * time.Second) // back to waiting for the periodic sync, no Sync call
	})
	t.Run("builder update reverted before the runner looks", func(t *testing.T) {
		b := newTestBuilder()
		svc := newService("svc")
		mustUpsert(t, b, svc)
		h := newRunnerHarnessFor(t, b, RunnerOptions{})
		h.mu.Lock()
		h.duringSync = func() {
			h.mu.Lock()
			h.duringSync = nil // only in the first sync
			h.mu.Unlock()
			if err := upsert(b, newService("svc", withNodePort(30080)), svc); err != nil {
				t.Error(err)
			}
		}
		h.mu.Unlock()
		b.MarkInitialized()
		h.expectSync(0, true)
		h.expectTimer(30 * time.Second)
		h.expect("queued")
		h.expectTimer(30 * time.Second) // woke up, found nothing to do: no Sync

		mustUpsert(t, b, newService("svc", withExternalIPs("192.0.2.1")))
		h.expect("queued")
		h.expectSync(0, false, "svc")
		h.expectTimer(30 * time.Second)
	})
}

func TestRunnerStopsOnCancel(t *testing.T) {
	tests := []struct {
		name  string
		setup func(*runnerHarness)
	}{
		{"before initialization", func(*runnerHarness) {}},
		{"while waiting for the next sync", func(h *runnerHarness) { h.startSynced(30 * time.Second) }},
		{"while waiting to retry", func(h *runnerHarness) {
			h.failNext(1)
			h.initialize()
			h.expectSync(0, true)
			h.expectTimer(time.Second)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newRunnerHarness(t, RunnerOptions{})
			tc.setup(h)
			h.cancel()
			select {
			case err := <-h.done:
				if err != nil {
					t.Errorf("Start = %v, want nil on cancellation", err)
				}
				h.done <- err // for the cleanup
			case <-time.After(10 * time.Second):
				t.Fatal("Start did not return after cancel")
			}
			select {
			case e := <-h.events:
				t.Errorf("event after cancel: %v", e)
			default:
			}
		})
	}
}

func TestRunnerObservers(t *testing.T) {
	h := newRunnerHarness(t, RunnerOptions{MinSyncPeriod: time.Second})
	h.syncTook = 250 * time.Millisecond
	h.failNext(1)
	h.initialize()

	e := h.expect("sync")
	d := h.expect("done")
	if d.result.State == nil || d.result.State.Generation != e.gen || !d.result.Changes.Full ||
		d.result.Start != h.start || d.result.Duration != 250*time.Millisecond || d.result.Err == nil {
		t.Errorf("failed SyncDone = %+v", d.result)
	}
	h.expectTimer(time.Second)

	// SyncQueued is called as the change arrives (the harness checks its time), even
	// while a retry is pending.
	h.clock.Step(100 * time.Millisecond)
	h.src.push(changeOf("a"))
	q := h.expect("queued")
	if q.at != 350*time.Millisecond {
		t.Errorf("SyncQueued at %v, want 350ms", q.at)
	}
	h.expectTimer(900 * time.Millisecond)
	h.clock.Step(900 * time.Millisecond)
	e = h.expect("sync")
	d = h.expect("done")
	if d.result.Err != nil || d.result.State.Generation != e.gen || d.result.Start != h.start.Add(1250*time.Millisecond) {
		t.Errorf("successful SyncDone = %+v", d.result)
	}
	h.expectTimer(30 * time.Second)
}
