package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
)

// FakeOptions configures NewFake.
type FakeOptions struct {
	// Backend is what Backend() reports; it also selects the behaviours
	// that differ between the variants (all verified on 1.8.9):
	//   - Restore with Flush resets built-in policies on nft only;
	//   - legacy checks targets' tables at COMMIT on the final table, nft
	//     when the rule is added (unless "-F CHAIN" dropped it again);
	//   - legacy's hook and loop checks follow control flow and skip rules
	//     after an unconditional ACCEPT/DROP/RETURN/QUEUE, nft checks
	//     every rule of a reachable chain.
	// Empty means nft.
	Backend Backend
	// Version is what Version() reports. Zero means 1.8.9.
	Version Version
	// IPSetExists, when set, makes rules matching an ipset ("-m set
	// --match-set NAME ...") fail unless it reports the set as existing,
	// as iptables does ("Set NAME doesn't exist."), so tests catch a sync
	// that restores rules before creating their sets. Typically backed by
	// an ipset fake.
	IPSetExists func(family Family, name string) bool
}

// FakeStats counts what the Fake was asked to do, so tests can assert
// "one restore per sync" and payload sizes.
type FakeStats struct {
	// Calls counts every call (failed ones included) per Op* name.
	Calls map[string]int
	// RestoreCalls counts Restore calls, one per would-be exec.
	RestoreCalls int
	// RestoreBytes sums the payload sizes of all Restore calls.
	RestoreBytes int64
	// FailedRestores counts Restore calls that returned an error.
	FailedRestores int
	// LastRestore is the payload of the most recent Restore call.
	LastRestore []byte
}

// Fake is an in-memory Kernel that behaves like iptables and the kernel:
// it keeps parsed tables per family, parses Restore payloads like
// iptables-restore --noflush (":CHAIN - [0:0]" creates or flushes, -A -I
// -D -R -N -X -F -P, COMMIT), rejects what the kernel rejects (jumps to
// missing chains, deleting a referenced or non-empty chain, restricted
// targets in the wrong table or reachable from the wrong hook, loops,
// malformed lines) with the line number, and applies each table block
// copy-then-commit so a failed block changes nothing. Save prints
// canonical iptables-save text (see fake_rule.go for what is
// canonicalised). Built-in chains exist from the start with policy ACCEPT.
//
// TestFakeMatchesKernel replays random payloads against the Fake and the
// real kernel (both backends, both families) and requires identical
// verdicts and saves. Known differences from iptables-nft 1.8.9, where the
// Fake follows legacy: "-I CHAIN N" / "-D CHAIN N" after ":CHAIN" in the
// same block (nft still counts the flushed rules), "-R" (which can crash
// iptables-nft-restore), and a rule added and then dropped with
// "-F CHAIN" in the same block (nft never sends it to the kernel; the
// Fake models that only for misplaced targets, so e.g. an earlier "-X" of
// the chain it jumped to still fails). Proxier-style payloads (declare,
// append, delete chains) are not affected.
//
// The zero value is ready to use (nft, version 1.8.9). Fake is safe for
// concurrent use.
type Fake struct {
	// Hook, when set, runs at the start of every operation with its Op*
	// name, the family and (for Restore) the payload; a non-nil error
	// fails the operation before anything changes. Set it before the Fake
	// is shared between goroutines.
	Hook func(op string, family Family, payload []byte) error

	mu        sync.Mutex
	backend   Backend
	version   Version
	setExists func(Family, string) bool
	families  map[Family]*fakeFamily
	failNext  map[string][]error
	stats     FakeStats
}

var _ Kernel = &Fake{}

// NewFake returns a Fake with the given options.
func NewFake(opts FakeOptions) *Fake {
	return &Fake{backend: opts.Backend, version: opts.Version, setExists: opts.IPSetExists}
}

// FailNext makes the next call of op (an Op* constant) fail with err
// without changing anything; queued errors are used in order.
func (f *Fake) FailNext(op string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failNext == nil {
		f.failNext = map[string][]error{}
	}
	f.failNext[op] = append(f.failNext[op], err)
}

// Stats returns a snapshot of the call counters.
func (f *Fake) Stats() FakeStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.stats
	s.Calls = maps.Clone(f.stats.Calls)
	s.LastRestore = bytes.Clone(f.stats.LastRestore)
	return s
}

// ResetStats zeroes the call counters.
func (f *Fake) ResetStats() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats = FakeStats{}
}

// Dump renders every existing table of both families as canonical
// iptables-save text, IPv4 first, each family introduced by a "# IPv4" or
// "# IPv6" line, for golden tests.
func (f *Fake) Dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var buf bytes.Buffer
	for _, fam := range []Family{IPv4, IPv6} {
		ff := f.families[fam]
		if ff == nil {
			continue
		}
		header := false
		for _, name := range sortedTables(ff.tables) {
			if t := ff.tables[name]; t.exists {
				if !header {
					fmt.Fprintf(&buf, "# %s\n", fam)
					header = true
				}
				t.save(&buf)
			}
		}
	}
	return buf.String()
}

// Rules returns the canonical rule specifications of a chain (the text
// after "-A CHAIN "), and whether the chain exists.
func (f *Fake) Rules(family Family, table Table, chain Chain) ([]string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.fam(family).table(table).chains[chain]
	if c == nil {
		return nil, false
	}
	specs := make([]string, len(c.rules))
	for i, r := range c.rules {
		specs[i] = r.spec
	}
	return specs, true
}

// Chains returns the user-defined chains of a table, sorted like
// iptables-save prints them.
func (f *Fake) Chains(family Family, table Table) []Chain {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !knownTable(table) {
		return nil
	}
	return f.fam(family).table(table).userChains()
}

// fam returns the state of a family, creating it on first use. Called
// with f.mu held.
func (f *Fake) fam(family Family) *fakeFamily {
	if f.families == nil {
		f.families = map[Family]*fakeFamily{}
	}
	ff := f.families[family]
	if ff == nil {
		ff = &fakeFamily{tables: map[Table]*fakeTable{}}
		f.families[family] = ff
	}
	return ff
}

// begin takes the lock and runs the bookkeeping every operation shares:
// counting, the Hook and queued failures. On error the lock is released.
func (f *Fake) begin(op string, family Family, payload []byte) error {
	f.mu.Lock()
	if f.stats.Calls == nil {
		f.stats.Calls = map[string]int{}
	}
	f.stats.Calls[op]++
	if !validFamily(family) {
		f.mu.Unlock()
		return fmt.Errorf("iptables: invalid family %v", family)
	}
	if f.Hook != nil {
		if err := f.Hook(op, family, payload); err != nil {
			f.mu.Unlock()
			return err
		}
	}
	if q := f.failNext[op]; len(q) > 0 {
		f.failNext[op] = q[1:]
		f.mu.Unlock()
		return q[0]
	}
	return nil
}

// env describes the Fake to a transaction.
func (f *Fake) env(family Family) txEnv {
	return txEnv{family: family, backend: f.backendName(), setExists: f.setExists}
}

// IPSetReferenced reports whether any rule of family matches the named
// ipset. The kernel refuses to destroy such a set ("in use by a kernel
// component", verified on both backends); an ipset fake can ask here.
func (f *Fake) IPSetReferenced(family Family, name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	needle := "--match-set " + name + " "
	for _, t := range f.fam(family).tables {
		for _, c := range t.chains {
			for _, r := range c.rules {
				if strings.Contains(r.spec, needle) {
					return true
				}
			}
		}
	}
	return false
}

// backendName returns the configured backend, defaulting to nft.
func (f *Fake) backendName() Backend {
	if f.backend == "" {
		return BackendNFT
	}
	return f.backend
}

// fakeError builds the *ExecError the Fake returns for a rejected change.
func (f *Fake) fakeError(op string, family Family, rf *restoreFailure, line int, payload []byte) *ExecError {
	cmd := "iptables (fake)"
	if op == OpRestore {
		cmd = fakeRestoreCmd
	}
	if family == IPv6 {
		cmd = "ip6" + cmd[2:]
	}
	e := &ExecError{
		Op: op, Backend: f.backendName(), Cmd: cmd, ExitCode: rf.code, Stderr: rf.msg,
		Line: line, LineText: payloadLine(payload, line), Err: rf,
		kind: ErrInvalidRuleset,
	}
	if line > 0 {
		e.Stderr = fmt.Sprintf("line %d: %s", line, rf.msg)
	}
	return e
}

// Backend implements Kernel.
func (f *Fake) Backend() Backend {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.backendName()
}

// Version implements Kernel.
func (f *Fake) Version(_ context.Context, family Family) (Version, error) {
	if err := f.begin(OpVersion, family, nil); err != nil {
		return Version{}, err
	}
	defer f.mu.Unlock()
	if f.version == (Version{}) {
		mode := "nf_tables"
		if f.backendName() == BackendLegacy {
			mode = "legacy"
		}
		return Version{Major: 1, Minor: 8, Patch: 9, Mode: mode}, nil
	}
	return f.version, nil
}

// Features implements Kernel.
func (f *Fake) Features(ctx context.Context, family Family) (Features, error) {
	v, err := f.Version(ctx, family)
	if err != nil {
		return Features{}, err
	}
	return featuresFor(v), nil
}

// Save implements Kernel. Named tables are printed even if nothing created
// them yet (both iptables variants do so); without names only existing
// tables are printed, in alphabetical order.
func (f *Fake) Save(ctx context.Context, family Family, tables ...Table) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := f.begin(OpSave, family, nil); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	ff := f.fam(family)
	var buf bytes.Buffer
	if len(tables) == 0 {
		for _, name := range sortedTables(ff.tables) {
			if t := ff.tables[name]; t.exists {
				t.save(&buf)
			}
		}
		return buf.Bytes(), nil
	}
	for _, name := range tables {
		if !knownTable(name) {
			return nil, &ExecError{Op: OpSave, Backend: f.backendName(), Cmd: "iptables-save (fake)",
				Args: []string{"-t", string(name)}, ExitCode: exitOtherProblem,
				Stderr: fmt.Sprintf("table %q does not exist", name)}
		}
		ff.table(name).save(&buf)
	}
	return buf.Bytes(), nil
}

// Restore implements Kernel; see the type documentation for semantics.
func (f *Fake) Restore(ctx context.Context, family Family, payload []byte, opts RestoreOptions) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := f.begin(OpRestore, family, payload); err != nil {
		f.countRestore(payload, err)
		return err
	}
	defer f.mu.Unlock()
	line, rf := applyRestore(f.fam(family), f.env(family), payload, opts)
	var err error
	if rf != nil {
		err = f.fakeError(OpRestore, family, rf, line, payload)
	}
	f.countRestoreLocked(payload, err)
	return err
}

// countRestore records a Restore that failed before taking effect.
func (f *Fake) countRestore(payload []byte, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.countRestoreLocked(payload, err)
}

// countRestoreLocked updates the restore counters; f.mu must be held.
func (f *Fake) countRestoreLocked(payload []byte, err error) {
	f.stats.RestoreCalls++
	f.stats.RestoreBytes += int64(len(payload))
	f.stats.LastRestore = bytes.Clone(payload)
	if err != nil {
		f.stats.FailedRestores++
	}
}

// change runs fn in a transaction on one table and commits it if fn and
// the kernel's reachability checks succeed. f.mu must be held.
func (f *Fake) change(op string, family Family, table Table, fn func(tx *tableTx) *restoreFailure) error {
	if !knownTable(table) {
		return f.fakeError(op, family, failf(exitOtherProblem, "table %q does not exist", table), 0, nil)
	}
	ff := f.fam(family)
	tx := beginTx(f.env(family), ff.table(table), false)
	rf := fn(tx)
	if rf == nil {
		rf = tx.validateGraph()
	}
	if rf != nil {
		return f.fakeError(op, family, rf, 0, nil)
	}
	tx.t.exists = true
	ff.tables[table] = tx.t
	return nil
}

// EnsureChain implements Kernel.
func (f *Fake) EnsureChain(_ context.Context, family Family, table Table, chain Chain) (bool, error) {
	if err := f.begin(OpEnsureChain, family, nil); err != nil {
		return false, err
	}
	defer f.mu.Unlock()
	existed := false
	err := f.change(OpEnsureChain, family, table, func(tx *tableTx) *restoreFailure {
		if tx.t.chains[chain] != nil {
			existed = true
			return nil
		}
		return tx.newChain(string(chain))
	})
	return existed, err
}

// ChainExists implements Kernel.
func (f *Fake) ChainExists(_ context.Context, family Family, table Table, chain Chain) (bool, error) {
	if err := f.begin(OpChainExists, family, nil); err != nil {
		return false, err
	}
	defer f.mu.Unlock()
	if !knownTable(table) {
		return false, nil
	}
	return f.fam(family).table(table).chains[chain] != nil, nil
}

// FlushChain implements Kernel.
func (f *Fake) FlushChain(_ context.Context, family Family, table Table, chain Chain) error {
	if err := f.begin(OpFlushChain, family, nil); err != nil {
		return err
	}
	defer f.mu.Unlock()
	err := f.change(OpFlushChain, family, table, func(tx *tableTx) *restoreFailure {
		if _, rf := tx.chain(string(chain)); rf != nil {
			return rf
		}
		tx.flushChain(chain)
		return nil
	})
	var ee *ExecError
	if errors.As(err, &ee) && ee.ExitCode == exitOtherProblem {
		ee.kind = ErrChainNotFound
	}
	return err
}

// DeleteChain implements Kernel.
func (f *Fake) DeleteChain(_ context.Context, family Family, table Table, chain Chain) error {
	if err := f.begin(OpDeleteChain, family, nil); err != nil {
		return err
	}
	defer f.mu.Unlock()
	return f.change(OpDeleteChain, family, table, func(tx *tableTx) *restoreFailure {
		if tx.t.chains[chain] == nil {
			return nil
		}
		return tx.deleteChain(string(chain))
	})
}

// jumpRule canonicalises a Jump for the given table transaction.
func jumpRule(tx *tableTx, j Jump) (fakeRule, *restoreFailure) {
	return tx.parseRule(j.Args())
}

// EnsureJump implements Kernel.
func (f *Fake) EnsureJump(_ context.Context, family Family, j Jump) (bool, error) {
	if err := j.validate(); err != nil {
		return false, err
	}
	if err := f.begin(OpEnsureJump, family, nil); err != nil {
		return false, err
	}
	defer f.mu.Unlock()
	existed := false
	err := f.change(OpEnsureJump, family, j.Table, func(tx *tableTx) *restoreFailure {
		c, rf := tx.chain(string(j.From))
		if rf != nil {
			return rf
		}
		r, rf := jumpRule(tx, j)
		if rf != nil {
			return rf
		}
		if findRule(c, r) >= 0 {
			existed = true
			return nil
		}
		pos := 0
		if j.Position == Append {
			pos = len(c.rules)
		}
		tx.insertRule(c.name, pos, r)
		return nil
	})
	var ee *ExecError
	if errors.As(err, &ee) && ee.ExitCode == exitOtherProblem && !existed {
		if _, ok := f.fam(family).table(j.Table).chains[j.From]; !ok {
			ee.kind = ErrChainNotFound
		}
	}
	return existed, err
}

// DeleteJump implements Kernel.
func (f *Fake) DeleteJump(_ context.Context, family Family, j Jump) error {
	if err := j.validate(); err != nil {
		return err
	}
	if err := f.begin(OpDeleteJump, family, nil); err != nil {
		return err
	}
	defer f.mu.Unlock()
	if !knownTable(j.Table) {
		return nil
	}
	t := f.fam(family).table(j.Table)
	if t.chains[j.From] == nil || t.chains[j.To] == nil && !knownTargets[string(j.To)] {
		return nil // nothing can jump to a chain that does not exist
	}
	return f.change(OpDeleteJump, family, j.Table, func(tx *tableTx) *restoreFailure {
		c := tx.t.chains[j.From]
		r, rf := jumpRule(tx, j)
		if rf != nil {
			return rf
		}
		if i := findRule(c, r); i >= 0 {
			tx.removeRule(c.name, i)
		}
		return nil
	})
}
