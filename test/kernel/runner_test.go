package kernel

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/kproxy/kproxy/proxier"
	"github.com/kproxy/kproxy/proxier/metrics"
)

// syncRecord is one sync attempt the Runner reported, with the time it ended.
type syncRecord struct {
	proxier.SyncResult
	End time.Time
}

// recorder is a proxier.SyncObserver that keeps every attempt so a test can wait for
// the one it expects.
type recorder struct {
	mu      sync.Mutex
	results []syncRecord
}

var _ proxier.SyncObserver = (*recorder)(nil)

// SyncQueued implements proxier.SyncObserver.
func (r *recorder) SyncQueued(time.Time) {}

// SyncDone implements proxier.SyncObserver.
func (r *recorder) SyncDone(res proxier.SyncResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.results = append(r.results, syncRecord{SyncResult: res, End: res.Start.Add(res.Duration)})
}

// count is how many attempts have been reported so far; pass it to waitFor to look only
// at later ones.
func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.results)
}

// waitFor returns the first attempt at index >= from that satisfies ok, failing the test
// after timeout.
func (r *recorder) waitFor(t *testing.T, from int, timeout time.Duration, what string, ok func(syncRecord) bool) syncRecord {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r.mu.Lock()
		for i := from; i < len(r.results); i++ {
			if ok(r.results[i]) {
				rec := r.results[i]
				r.mu.Unlock()
				return rec
			}
		}
		n := len(r.results)
		r.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no sync attempt %s within %v (%d attempts seen)", what, timeout, n-from)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func succeeded(r syncRecord) bool { return r.Err == nil }

// logBook is a logger that writes to the test log and keeps every line, so a test can
// assert that a failure was logged. Lines arriving after the test ended are dropped.
type logBook struct {
	mu     sync.Mutex
	lines  []string
	closed atomic.Bool
}

// logger returns a logr.Logger at verbosity 2 (the proxier's per-sync lines) that
// records into b and t.
func (b *logBook) logger(t *testing.T) logr.Logger {
	t.Cleanup(func() { b.closed.Store(true) })
	return funcr.New(func(prefix, args string) {
		if b.closed.Load() {
			return
		}
		line := prefix + " " + args
		b.mu.Lock()
		b.lines = append(b.lines, line)
		b.mu.Unlock()
		t.Log(line)
	}, funcr.Options{Verbosity: 2})
}

// find returns the recorded lines containing every one of parts.
func (b *logBook) find(parts ...string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
next:
	for _, l := range b.lines {
		for _, p := range parts {
			if !strings.Contains(l, p) {
				continue next
			}
		}
		out = append(out, l)
	}
	return out
}

// running is a Runner driving a proxier from a source, with what it reports.
type running struct {
	src     *source
	rec     *recorder
	metrics *metrics.Metrics
	logs    *logBook
}

// startRunner runs a proxier.Runner over p until the test ends; its goroutine is
// stopped (and waited for) before the test's earlier cleanups, such as the topology's.
func startRunner(t *testing.T, p proxier.Proxier, src *source, m *metrics.Metrics, logs *logBook, opts proxier.RunnerOptions) *running {
	t.Helper()
	rec := &recorder{}
	opts.Observers = append(opts.Observers, m, rec)
	opts.Logger = logs.logger(t).WithName("runner")
	r := proxier.NewRunner(src, p, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("runner: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Errorf("runner did not stop within 60s")
		}
	})
	return &running{src: src, rec: rec, metrics: m, logs: logs}
}

// describeSync is one line about a sync attempt, for logs.
func describeSync(r syncRecord) string {
	return fmt.Sprintf("full=%v services=%d took %v err=%v", r.Changes.Full, len(r.Changes.Services),
		r.Duration.Round(time.Millisecond), r.Err)
}
