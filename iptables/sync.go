package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kproxy/kproxy/proxier"
)

// Sync implements proxier.Proxier: it renders state and makes the kernel match it.
//
// The order of a sync is: render; plan (full: read the kernel back; partial: diff
// against the last applied ruleset); create the ipsets and entries the new rules need;
// one iptables-restore (which also repairs bootstrap jumps); remove ipset entries and sets
// no longer used; record what was applied; delete stale conntrack entries; publish
// metrics. On an error nothing is recorded as applied, so the next sync (whatever the
// caller asks for) is a full one that re-reads the kernel.
func (p *Proxier) Sync(ctx context.Context, state *proxier.State, changes proxier.ChangeSet) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	start := time.Now()
	full := changes.Full || p.applied == nil
	renderChanges := changes
	if full && !changes.Full {
		renderChanges = proxier.FullSync()
	}
	st := SyncStats{Full: full}
	defer func() {
		st.Total = time.Since(start)
		p.last = st
	}()

	rs := p.renderer.Render(state, renderChanges)
	st.Render = time.Since(start)

	var pl *plan
	var err error
	if !full {
		pl = planPartial(rs, p.applied)
		if pl == nil {
			p.log.V(2).Info("Bootstrap jumps changed; syncing fully")
			full, st.Full = true, true
		}
	}
	if full {
		readStart := time.Now()
		if p.sampleDue() {
			pl = p.planFromSample(ctx, rs, &st)
		}
		if pl == nil {
			pl, err = p.planFromKernel(ctx, rs, &st)
		}
		st.Read = time.Since(readStart)
		if err != nil {
			return p.fail(err, full)
		}
	}

	setsStart := time.Now()
	sets, err := p.planSets(ctx, rs, full)
	if err != nil {
		return p.fail(err, full)
	}
	if err := sets.applyBefore(ctx, p.ipsets); err != nil {
		return p.fail(fmt.Errorf("iptables: update ipsets: %w", err), full)
	}
	st.IPSets = time.Since(setsStart)

	if err := p.restore(ctx, pl, &st); err != nil {
		p.countRestoreFailure(full)
		return p.fail(err, full)
	}
	setsStart = time.Now()
	leftovers, err := sets.applyAfter(ctx, p.ipsets)
	st.IPSets += time.Since(setsStart)
	if leftovers != nil {
		p.log.Error(leftovers, "Failed to destroy unused ipsets; will retry on the next full sync")
	}
	if err != nil {
		// The rules are in place; only leftovers remain. Record the rules but not
		// the sets, and let the retry (a full sync) list the sets again.
		p.commit(rs, state, nil)
		return fmt.Errorf("iptables: remove unused ipset content: %w", err)
	}
	prev := p.syncedState
	p.commit(rs, state, sets.next)
	switch {
	case st.Sampled > 0:
		p.sampledRuns++
	case full:
		p.sampledRuns = 0
	}

	ctStart := time.Now()
	st.ConntrackCleared = p.cleanConntrack(ctx, state, prev, changes, full)
	st.Conntrack = time.Since(ctStart)
	p.updateMetrics(rs, pl, state, changes, full)
	p.log.V(2).Info("Synced iptables rules", "full", full, "sampled", st.Sampled, "chainsWritten", st.ChainsWritten,
		"chainsDeleted", st.ChainsDeleted, "payloadBytes", st.PayloadBytes, "restores", st.Restores,
		"conntrackCleared", st.ConntrackCleared, "duration", time.Since(start))
	return nil
}

// fail forgets what the kernel holds, so the next sync reads it back, and returns err.
func (p *Proxier) fail(err error, full bool) error {
	p.applied, p.appliedSets = nil, nil
	p.log.V(2).Info("Sync failed; the next sync will be full", "full", full, "err", err)
	return err
}

// commit records a successful sync.
func (p *Proxier) commit(rs *Ruleset, state *proxier.State, sets map[string]*IPSet) {
	p.applied, p.appliedSets = rs, sets
	p.syncedState = state
	p.canaryWritten = hasCanary(rs)
}

// planFromKernel reads the owned chains back and plans a full sync.
func (p *Proxier) planFromKernel(ctx context.Context, rs *Ruleset, st *SyncStats) (*plan, error) {
	text, err := p.kernel.Save(ctx, p.family, syncTables...)
	if err != nil {
		return nil, fmt.Errorf("iptables: read rules back: %w", err)
	}
	saved, err := ParseSaved(text)
	if err != nil {
		return nil, fmt.Errorf("iptables: read rules back: %w", err)
	}
	st.SavedLines = saved.Lines
	if p.canaryWritten && !savedHasCanary(saved) {
		p.log.Info("KUBE-PROXY-CANARY is gone from the mangle table: the iptables rules were flushed externally (firewall reload?); rewriting them")
	}
	pl := planFull(rs, saved)
	for _, tp := range pl.tables {
		if len(tp.flushOnly) > 0 {
			p.log.Info("Stale chains are still referenced by rules kproxy does not own; emptying them but not deleting them",
				"table", tp.table, "chains", tp.flushOnly)
		}
	}
	return pl, nil
}

// planFromSample verifies a sample of the kernel's chains against the last applied
// ruleset and, when they match, plans the difference to rs as a partial sync would.
// It returns nil when the sample differs or cannot be read: the caller then reads
// everything back.
func (p *Proxier) planFromSample(ctx context.Context, rs *Ruleset, st *SyncStats) *plan {
	n, err := p.verifySample(ctx)
	if err != nil {
		p.log.V(2).Info("Sampled verification failed; reading all rules back", "chains", n, "reason", err)
		return nil
	}
	pl := planPartial(rs, p.applied)
	if pl != nil {
		st.Sampled = n
	}
	return pl
}

// hasCanary reports whether the ruleset creates the mangle canary.
func hasCanary(rs *Ruleset) bool {
	return rs.Table(TableMangle).Chain(canaryChain) != nil
}

// savedHasCanary reports whether the kernel still holds the mangle canary.
func savedHasCanary(s *Saved) bool {
	t := s.Table(TableMangle)
	if t == nil {
		return false
	}
	_, ok := t.Chains[canaryChain]
	return ok
}

// planSets diffs the rendered ipsets against the kernel (full sync) or the last
// applied sets (partial sync).
func (p *Proxier) planSets(ctx context.Context, rs *Ruleset, full bool) (*ipsetPlan, error) {
	if p.ipsets == nil {
		if len(rs.Sets) > 0 {
			return nil, errors.New("iptables: the ruleset uses ipsets but Options.IPSets is nil")
		}
		return &ipsetPlan{}, nil
	}
	current := p.appliedSets
	if full || current == nil {
		var err error
		current, err = readIPSets(ctx, p.ipsets, p.family)
		if err != nil {
			return nil, fmt.Errorf("iptables: list ipsets: %w", err)
		}
	}
	return planIPSets(rs.Sets, current)
}

// restore writes the plan in one iptables-restore call, or none when nothing differs.
func (p *Proxier) restore(ctx context.Context, pl *plan, st *SyncStats) error {
	for _, tp := range pl.tables {
		st.ChainsWritten += len(tp.write)
		st.ChainsDeleted += len(tp.remove)
		st.JumpsRemoved += len(tp.unjump)
		st.JumpsAdded += len(tp.insert)
	}
	if !pl.needsRestore() {
		return nil
	}
	pl.splitNames, pl.splitMinRules = p.splitNames, p.splitMinRules
	var b bytes.Buffer
	b.Grow(payloadSize(pl))
	writePayload(&b, pl)
	st.PayloadBytes = b.Len()
	st.Restores = 1
	restoreStart := time.Now()
	err := p.kernel.Restore(ctx, p.family, b.Bytes(), RestoreOptions{})
	st.Restore = time.Since(restoreStart)
	if p.metrics != nil {
		p.metrics.RulesWrittenBytes.Add(float64(b.Len()))
	}
	if err != nil {
		return fmt.Errorf("iptables: restore %d bytes (%d chains written, %d deleted): %w",
			b.Len(), st.ChainsWritten, st.ChainsDeleted, err)
	}
	return nil
}

// countRestoreFailure updates the failure counters like kube-proxy: every failure
// counts, partial-sync failures count again separately.
func (p *Proxier) countRestoreFailure(full bool) {
	if p.metrics == nil {
		return
	}
	p.metrics.RestoreFailures.Inc()
	if !full {
		p.metrics.PartialRestoreFailures.Inc()
	}
}
