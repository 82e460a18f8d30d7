package hostile

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/kproxy/kproxy/proxier"
)

// recorder is a Proxier that keeps the last State it was asked to program, so the
// test sees exactly what a real backend would be given.
type recorder struct {
	mu    sync.Mutex
	last  *proxier.State
	syncs int
	wake  chan struct{}
}

func newRecorder() *recorder { return &recorder{wake: make(chan struct{}, 1)} }

// Sync implements proxier.Proxier.
func (r *recorder) Sync(_ context.Context, s *proxier.State, _ proxier.ChangeSet) error {
	r.mu.Lock()
	r.last, r.syncs = s, r.syncs+1
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return nil
}

// Cleanup implements proxier.Proxier.
func (r *recorder) Cleanup(context.Context) error { return nil }

// waitFor waits until the last synced State satisfies cond, which returns "" when
// satisfied and else what is still missing, and returns that State.
func (r *recorder) waitFor(t *testing.T, timeout time.Duration, cond func(*proxier.State) string) *proxier.State {
	t.Helper()
	deadline := time.After(timeout)
	for {
		r.mu.Lock()
		st, n := r.last, r.syncs
		r.mu.Unlock()
		missing := "no sync yet"
		if st != nil {
			if missing = cond(st); missing == "" {
				return st
			}
		}
		select {
		case <-r.wake:
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out after %v and %d syncs: %s", timeout, n, missing)
		}
	}
}
