package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
)

// Cleanup implements proxier.Proxier: it removes everything the iptables proxier owns
// in its family and nothing else, whether kproxy or kube-proxy created it:
//
//   - rules in built-in chains that jump to an owned chain (the bootstrap jumps);
//   - every owned chain (see OwnedChain), flushed and deleted;
//   - every owned ipset (see OwnedIPSet).
//
// It works from what the kernel holds, not from memory, so it also cleans up after a
// previous process, and it is idempotent: with nothing to remove it writes nothing.
// An owned chain that a foreign rule still jumps to is flushed but kept (deleting it
// would mean editing the foreign chain) and reported in the error.
func (p *Proxier) Cleanup(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.applied, p.appliedSets, p.syncedState = nil, nil, nil
	p.canaryWritten = false
	clear(p.noLocal)

	text, err := p.kernel.Save(ctx, p.family, syncTables...)
	if err != nil {
		return fmt.Errorf("iptables: cleanup: read rules: %w", err)
	}
	saved, err := ParseSaved(text)
	if err != nil {
		return fmt.Errorf("iptables: cleanup: read rules: %w", err)
	}
	pl := planFull(&Ruleset{Family: p.family}, saved)
	var errs []error
	if pl.needsRestore() {
		var b bytes.Buffer
		writePayload(&b, pl)
		if err := p.kernel.Restore(ctx, p.family, b.Bytes(), RestoreOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("iptables: cleanup: remove chains: %w", err))
		}
	}
	for _, tp := range pl.tables {
		if len(tp.kept) > 0 {
			errs = append(errs, fmt.Errorf("iptables: cleanup: %s chains %v are still referenced by foreign rules; emptied but not deleted",
				tp.table, tp.kept))
		}
	}
	if p.ipsets != nil {
		sets, err := p.ipsets.List(ctx, OwnedIPSet)
		if err != nil {
			errs = append(errs, fmt.Errorf("iptables: cleanup: list ipsets: %w", err))
		}
		names := make([]string, 0, len(sets))
		for _, s := range sets {
			if s.Family == p.family {
				names = append(names, s.Name)
			}
		}
		slices.Sort(names)
		for _, name := range names {
			if err := p.ipsets.Destroy(ctx, name); err != nil {
				errs = append(errs, fmt.Errorf("iptables: cleanup: %w", err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	p.log.V(2).Info("Removed iptables rules", "tables", len(pl.tables))
	return nil
}
