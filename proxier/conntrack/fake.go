package conntrack

import (
	"context"
	"slices"
	"sync"

	"github.com/kproxy/kproxy/proxier"
)

// Fake is an in-memory Cleaner with a flow table per family, for tests of backends:
// preload flows with Add, sync, then look at what Flows remain and what Calls asked
// for. It applies exactly the Matcher the kernel implementation uses.
type Fake struct {
	mu    sync.Mutex
	flows map[proxier.IPFamily][]Flow
	calls []FakeCall
	// err, when set, fails the next Clean.
	err error
}

// FakeCall records one Clean call.
type FakeCall struct {
	Family proxier.IPFamily
	// Targets is a copy of what the caller passed.
	Targets []Target
	// Deleted is how many flows the call removed.
	Deleted int
}

var _ Cleaner = (*Fake)(nil)

// NewFake returns an empty Fake.
func NewFake() *Fake { return &Fake{flows: map[proxier.IPFamily][]Flow{}} }

// Add puts flows into the family's table.
func (f *Fake) Add(family proxier.IPFamily, flows ...Flow) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.flows[family] = append(f.flows[family], flows...)
}

// Flows returns the family's remaining flows.
func (f *Fake) Flows(family proxier.IPFamily) []Flow {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.flows[family])
}

// Calls returns every Clean call so far.
func (f *Fake) Calls() []FakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// FailNext makes the next Clean return err without deleting anything.
func (f *Fake) FailNext(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// Clean implements Cleaner.
func (f *Fake) Clean(ctx context.Context, family proxier.IPFamily, targets []Target) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.err; err != nil {
		f.err = nil
		return 0, err
	}
	m := NewMatcher(targets)
	kept := f.flows[family][:0:0]
	deleted := 0
	for _, fl := range f.flows[family] {
		if m.Stale(fl) {
			deleted++
			continue
		}
		kept = append(kept, fl)
	}
	f.flows[family] = kept
	f.calls = append(f.calls, FakeCall{Family: family, Targets: slices.Clone(targets), Deleted: deleted})
	return deleted, nil
}
