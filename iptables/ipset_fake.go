package iptables

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
)

// FakeIPSets is an in-memory IPSetKernel that validates like the kernel: entries must
// parse for the set's type, a set must exist before entries are added, and a set that
// a test marked as referenced (Reference) cannot be destroyed. It counts calls so
// tests can assert that a sync touched only the difference.
type FakeIPSets struct {
	mu    sync.Mutex
	sets  map[string]*fakeSet
	refs  map[string]bool
	stats FakeIPSetStats
	fail  map[string]error
}

// FakeIPSetStats counts what a FakeIPSets was asked to do.
type FakeIPSetStats struct {
	// Lists, Creates and Destroys count calls.
	Lists, Creates, Destroys int
	// Added and Deleted count entries.
	Added, Deleted int
}

type fakeSet struct {
	typ     string
	family  Family
	entries map[string]bool
}

var _ IPSetKernel = (*FakeIPSets)(nil)

// NewFakeIPSets returns an empty FakeIPSets.
func NewFakeIPSets() *FakeIPSets {
	return &FakeIPSets{sets: map[string]*fakeSet{}, refs: map[string]bool{}, fail: map[string]error{}}
}

// Reference marks a set as used by a rule (or not), so Destroy fails like the kernel.
func (f *FakeIPSets) Reference(name string, referenced bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refs[name] = referenced
}

// FailNext makes the next call of op ("list", "create", "add", "del", "destroy") fail.
func (f *FakeIPSets) FailNext(op string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[op] = err
}

// Stats returns the counters.
func (f *FakeIPSets) Stats() FakeIPSetStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// Set returns a set's sorted entries and whether it exists.
func (f *FakeIPSets) Set(name string) ([]string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.sets[name]
	if s == nil {
		return nil, false
	}
	return slices.Sorted(maps.Keys(s.entries)), true
}

// Names returns every set name, sorted.
func (f *FakeIPSets) Names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(maps.Keys(f.sets))
}

func (f *FakeIPSets) injected(op string) error {
	if err := f.fail[op]; err != nil {
		delete(f.fail, op)
		return err
	}
	return nil
}

// List implements IPSetKernel.
func (f *FakeIPSets) List(ctx context.Context, want func(string) bool) ([]*IPSet, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats.Lists++
	if err := f.injected("list"); err != nil {
		return nil, err
	}
	var out []*IPSet
	for _, name := range slices.Sorted(maps.Keys(f.sets)) {
		if want != nil && !want(name) {
			continue
		}
		s := f.sets[name]
		out = append(out, &IPSet{Name: name, Type: s.typ, Family: s.family, Entries: slices.Sorted(maps.Keys(s.entries))})
	}
	return out, nil
}

// Create implements IPSetKernel.
func (f *FakeIPSets) Create(ctx context.Context, set *IPSet) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats.Creates++
	if err := f.injected("create"); err != nil {
		return err
	}
	if _, err := ipsetComponents(set.Type); err != nil {
		return err
	}
	if s := f.sets[set.Name]; s != nil {
		if s.typ != set.Type || s.family != set.Family {
			return fmt.Errorf("ipset: create %s: exists with type %s %v", set.Name, s.typ, s.family)
		}
		return nil
	}
	f.sets[set.Name] = &fakeSet{typ: set.Type, family: set.Family, entries: map[string]bool{}}
	return nil
}

// Add implements IPSetKernel.
func (f *FakeIPSets) Add(ctx context.Context, set *IPSet, entries []string) error {
	return f.addDel("add", set, entries)
}

// Del implements IPSetKernel.
func (f *FakeIPSets) Del(ctx context.Context, set *IPSet, entries []string) error {
	return f.addDel("del", set, entries)
}

func (f *FakeIPSets) addDel(op string, set *IPSet, entries []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.injected(op); err != nil {
		return err
	}
	s := f.sets[set.Name]
	if s == nil {
		return fmt.Errorf("ipset: %s %s: set does not exist", op, set.Name)
	}
	canon := make([]string, len(entries))
	for i, e := range entries {
		c, err := CanonicalIPSetEntry(s.typ, e)
		if err != nil {
			return fmt.Errorf("ipset: %s %s: %w", op, set.Name, err)
		}
		if fam := familyOfEntry(c); fam != s.family {
			return fmt.Errorf("ipset: %s %s: entry %q is not %v", op, set.Name, e, s.family)
		}
		canon[i] = c
	}
	for _, c := range canon {
		if op == "add" {
			s.entries[c] = true
			f.stats.Added++
		} else {
			delete(s.entries, c)
			f.stats.Deleted++
		}
	}
	return nil
}

// familyOfEntry guesses an entry's family from its first component.
func familyOfEntry(entry string) Family {
	for i := 0; i < len(entry) && entry[i] != ','; i++ {
		if entry[i] == ':' {
			return IPv6
		}
	}
	return IPv4
}

// Destroy implements IPSetKernel.
func (f *FakeIPSets) Destroy(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats.Destroys++
	if err := f.injected("destroy"); err != nil {
		return err
	}
	if f.refs[name] {
		return fmt.Errorf("ipset: destroy %s: set is in use by a rule", name)
	}
	delete(f.sets, name)
	return nil
}
