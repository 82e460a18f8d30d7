package iptables

import (
	"slices"
)

// tablePlan is what one table block of a restore payload does.
type tablePlan struct {
	table Table
	// write are chains to declare (creating or flushing them) and fill.
	write []*ChainRules
	// remove are owned chains to flush and delete.
	remove []Chain
	// flushOnly are stale owned chains that a foreign rule still jumps to and that
	// still have rules: they are emptied (so nothing they referenced stays in use) but
	// not deleted.
	flushOnly []Chain
	// kept are all stale owned chains a foreign rule jumps to, empty or not; they
	// stay until the foreign rule goes.
	kept []Chain
	// unjump are rules in built-in chains to delete: jumps to chains being removed,
	// duplicates and jumps no longer wanted.
	unjump []SavedRule
	// insert are missing bootstrap jumps, added in the same block as the chains they
	// lead to.
	insert []Jump
	// cold reports that, before this block, no rule outside the owned chains jumps
	// into them (no bootstrap jump, no foreign reference): the owned chains are
	// unreachable for packets, and the kernel does not walk them when it validates
	// a commit. Only a full sync knows; see writeSplitTable.
	cold bool
}

// empty reports whether the block would change nothing.
func (t *tablePlan) empty() bool {
	return len(t.write) == 0 && len(t.remove) == 0 && len(t.flushOnly) == 0 && len(t.unjump) == 0 && len(t.insert) == 0
}

// rules counts the rules the block writes.
func (t *tablePlan) rules() int {
	n := 0
	for _, c := range t.write {
		n += len(c.Rules)
	}
	return n
}

// plan is the difference between the desired ruleset and the kernel (full sync) or
// the last applied ruleset (partial sync).
type plan struct {
	full bool
	// tables holds the non-empty blocks in syncTables order.
	tables []*tablePlan
	// splitNames, when positive, lets writePayload cut the block of a cold table
	// that writes at least splitMinRules rules into blocks of at most splitNames
	// chain and target names (iptables-nft only; see writeSplitTable).
	splitNames, splitMinRules int
}

// needsRestore reports whether an iptables-restore call is needed.
func (p *plan) needsRestore() bool {
	for _, tp := range p.tables {
		if !tp.empty() {
			return true
		}
	}
	return false
}

// planFull compares the desired ruleset with what the kernel holds. Every owned chain
// whose rules differ (or that is missing) is rewritten, every owned chain that is not
// desired is deleted, bootstrap jumps that are missing are scheduled and jumps from
// built-in chains to owned chains that are not desired (or are duplicates) are
// deleted. Chains kept alive by a foreign rule are flushed instead of deleted.
//
// Missing jumps go into the same restore payload instead of separate EnsureJump calls:
// on iptables-legacy each single-rule command reloads and replaces the whole table,
// which at 10,000 services cost 4.8 s for the twelve jumps of a cold start, against
// nothing extra inside the restore. The kernel tests check that the jumps' argument
// form matches iptables-save's on both backends, which is what keeps a recognised jump
// from being inserted twice; a jump the parser failed to recognise would be deleted and
// inserted again by every full sync (visible as JumpsRemoved/JumpsAdded), never
// duplicated.
func planFull(desired *Ruleset, saved *Saved) *plan {
	p := &plan{full: true}
	for _, table := range syncTables {
		st := saved.Table(table)
		tp := &tablePlan{table: table, cold: st == nil || len(st.BuiltinJumps) == 0 && len(st.ForeignRefs) == 0}
		dt := desired.Table(table)
		var kernel map[Chain][]string
		if st != nil {
			kernel = st.Chains
		}
		var want map[Chain]bool
		if dt != nil {
			want = make(map[Chain]bool, len(dt.Chains))
			for _, c := range dt.Chains {
				want[c.Name] = true
				rules, ok := kernel[c.Name]
				if !ok || !slices.Equal(rules, c.Rules) {
					tp.write = append(tp.write, c)
				}
			}
		}
		var foreignRef map[Chain]bool
		if st != nil && len(st.ForeignRefs) > 0 {
			foreignRef = map[Chain]bool{}
			for _, r := range st.ForeignRefs {
				foreignRef[r.Target] = true
			}
		}
		removed := map[Chain]bool{}
		for name := range kernel {
			if want[name] {
				continue
			}
			if foreignRef[name] {
				tp.kept = append(tp.kept, name)
				if len(kernel[name]) > 0 {
					tp.flushOnly = append(tp.flushOnly, name)
				}
				continue
			}
			tp.remove = append(tp.remove, name)
			removed[name] = true
		}
		slices.Sort(tp.remove)
		slices.Sort(tp.flushOnly)
		slices.Sort(tp.kept)
		tp.insert = planJumps(tp, desired.Jumps, st, removed)
		if !tp.empty() || len(tp.kept) > 0 {
			p.tables = append(p.tables, tp)
		}
	}
	return p
}

// planJumps matches the desired bootstrap jumps of tp's table against the kernel's
// built-in rules that jump to owned chains. The first kernel rule equal to a desired
// jump satisfies it; every other such rule is scheduled for deletion (tp.unjump),
// since it is either a duplicate, a leftover of kube-proxy, or refers to a chain that
// is going away. Desired jumps with no match are returned as missing.
func planJumps(tp *tablePlan, jumps []Jump, st *SavedTable, removed map[Chain]bool) []Jump {
	var desired []Jump
	for _, j := range jumps {
		if j.Table == tp.table {
			desired = append(desired, j)
		}
	}
	found := make([]bool, len(desired))
	if st != nil {
		for _, r := range st.BuiltinJumps {
			matched := false
			if !removed[r.Target] {
				words := splitSavedWords(r.Spec)
				for i, j := range desired {
					if !found[i] && j.From == r.Chain && slices.Equal(words, j.Args()) {
						found[i], matched = true, true
						break
					}
				}
			}
			if !matched {
				tp.unjump = append(tp.unjump, r)
			}
		}
	}
	var missing []Jump
	for i, j := range desired {
		if !found[i] {
			missing = append(missing, j)
		}
	}
	return missing
}

// planPartial compares the desired ruleset with the last one applied, chain by chain
// (bootstrap jumps are assumed to be in place; only a full sync checks them):
// a chain shared by pointer (the renderer reuses unchanged chains) is skipped without
// looking at its rules. It returns nil when a partial sync cannot express the change
// (the bootstrap jumps differ), so the caller falls back to a full sync.
func planPartial(desired, applied *Ruleset) *plan {
	if !jumpsEqual(desired.Jumps, applied.Jumps) {
		return nil
	}
	p := &plan{}
	for _, table := range syncTables {
		tp := &tablePlan{table: table}
		var want, have []*ChainRules
		if dt := desired.Table(table); dt != nil {
			want = dt.Chains
		}
		if at := applied.Table(table); at != nil {
			have = at.Chains
		}
		i, j := 0, 0
		for i < len(want) || j < len(have) {
			switch {
			case j == len(have) || (i < len(want) && want[i].Name < have[j].Name):
				tp.write = append(tp.write, want[i])
				i++
			case i == len(want) || have[j].Name < want[i].Name:
				tp.remove = append(tp.remove, have[j].Name)
				j++
			default:
				if want[i] != have[j] && !want[i].Equal(have[j]) {
					tp.write = append(tp.write, want[i])
				}
				i++
				j++
			}
		}
		if !tp.empty() {
			p.tables = append(p.tables, tp)
		}
	}
	return p
}

// jumpsEqual compares two jump lists element by element.
func jumpsEqual(a, b []Jump) bool {
	return slices.EqualFunc(a, b, func(x, y Jump) bool {
		return x.Table == y.Table && x.From == y.From && x.To == y.To && x.Comment == y.Comment &&
			x.Position == y.Position && slices.Equal(x.Match, y.Match)
	})
}
