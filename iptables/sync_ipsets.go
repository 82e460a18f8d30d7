package iptables

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// ipsetPlan splits the ipset work of a sync around the iptables-restore: sets and
// entries rules will need are created before (a rule naming a missing set is
// rejected), entries and sets no rule needs any more are removed after (a set still
// referenced by a rule cannot be destroyed, and removing entries early would cut
// traffic the old rules still send through them).
type ipsetPlan struct {
	create  []*IPSet
	add     []ipsetEntries
	del     []ipsetEntries
	destroy []string
	// recreate are sets that exist with another type or family; they are destroyed
	// and created again before the restore, which fails while a rule uses them.
	recreate []string
	// next is the content the kernel will hold once the plan is applied.
	next map[string]*IPSet
}

// ipsetEntries is a batch of entries for one set.
type ipsetEntries struct {
	set     *IPSet
	entries []string
}

// planIPSets diffs the desired sets against current (the kernel's owned sets on a full
// sync, the last applied ones on a partial sync). Entries are compared in canonical
// form; a desired set identical (by pointer) to the current one is skipped.
func planIPSets(desired []*IPSet, current map[string]*IPSet) (*ipsetPlan, error) {
	p := &ipsetPlan{next: make(map[string]*IPSet, len(desired))}
	for _, d := range desired {
		if _, dup := p.next[d.Name]; dup {
			return nil, fmt.Errorf("ipset %s is rendered twice", d.Name)
		}
		cur := current[d.Name]
		if cur == d {
			p.next[d.Name] = d
			continue
		}
		if cur != nil && cur.Type == d.Type && cur.Family == d.Family {
			if add, del, ok := quickDiff(d, cur); ok {
				p.next[d.Name] = d
				if len(add) > 0 {
					p.add = append(p.add, ipsetEntries{d, add})
				}
				if len(del) > 0 {
					p.del = append(p.del, ipsetEntries{d, del})
				}
				continue
			}
		}
		want, err := canonicalEntries(d)
		if err != nil {
			return nil, err
		}
		canon := &IPSet{Name: d.Name, Type: d.Type, Family: d.Family, Entries: want}
		p.next[d.Name] = canon
		if cur != nil && (cur.Type != d.Type || cur.Family != d.Family) {
			p.recreate = append(p.recreate, d.Name)
			cur = nil
		}
		if cur == nil {
			p.create = append(p.create, canon)
			if len(want) > 0 {
				p.add = append(p.add, ipsetEntries{canon, want})
			}
			continue
		}
		add, del := diffSorted(want, cur.Entries)
		if len(add) > 0 {
			p.add = append(p.add, ipsetEntries{canon, add})
		}
		if len(del) > 0 {
			p.del = append(p.del, ipsetEntries{canon, del})
		}
	}
	for name := range current {
		if _, ok := p.next[name]; !ok && OwnedIPSet(name) {
			p.destroy = append(p.destroy, name)
		}
	}
	slices.Sort(p.destroy)
	return p, nil
}

// quickDiff diffs a rendered set against a canonical one without canonicalising
// every entry: when the rendered entries are sorted and unique (the renderer's
// contract) and every entry to add is already canonical, the raw difference is the
// real one. Otherwise it reports !ok and the caller takes the slow path.
func quickDiff(d, cur *IPSet) (add, del []string, ok bool) {
	for i := 1; i < len(d.Entries); i++ {
		if d.Entries[i-1] >= d.Entries[i] {
			return nil, nil, false
		}
	}
	add, del = diffSorted(d.Entries, cur.Entries)
	for _, e := range add {
		if c, err := CanonicalIPSetEntry(d.Type, e); err != nil || c != e {
			return nil, nil, false
		}
	}
	return add, del, true
}

// canonicalEntries returns the set's entries in canonical form, sorted and
// de-duplicated.
func canonicalEntries(s *IPSet) ([]string, error) {
	out := make([]string, len(s.Entries))
	for i, e := range s.Entries {
		c, err := CanonicalIPSetEntry(s.Type, e)
		if err != nil {
			return nil, fmt.Errorf("ipset %s: %w", s.Name, err)
		}
		out[i] = c
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// diffSorted returns the elements only in want (to add) and only in have (to delete);
// both inputs are sorted.
func diffSorted(want, have []string) (add, del []string) {
	i, j := 0, 0
	for i < len(want) || j < len(have) {
		switch {
		case j == len(have) || (i < len(want) && want[i] < have[j]):
			add = append(add, want[i])
			i++
		case i == len(want) || have[j] < want[i]:
			del = append(del, have[j])
			j++
		default:
			i++
			j++
		}
	}
	return add, del
}

// applyBefore creates sets and adds entries: everything the new rules need.
func (p *ipsetPlan) applyBefore(ctx context.Context, k IPSetKernel) error {
	for _, name := range p.recreate {
		if err := k.Destroy(ctx, name); err != nil {
			return fmt.Errorf("recreate ipset with a new type: %w", err)
		}
	}
	for _, s := range p.create {
		if err := k.Create(ctx, s); err != nil {
			return err
		}
	}
	for _, a := range p.add {
		if err := k.Add(ctx, a.set, a.entries); err != nil {
			return err
		}
	}
	return nil
}

// applyAfter removes entries and sets the new rules no longer use. Entry removal
// failures are returned (a stale entry can change what the rules do); failures to
// destroy an unused set are only returned in leftovers, because a leftover set is
// harmless and may be pinned by somebody else's rule for good.
func (p *ipsetPlan) applyAfter(ctx context.Context, k IPSetKernel) (leftovers, err error) {
	for _, d := range p.del {
		if err := k.Del(ctx, d.set, d.entries); err != nil {
			return nil, err
		}
	}
	var errs []error
	for _, name := range p.destroy {
		if err := k.Destroy(ctx, name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...), nil
}

// readIPSets lists the kernel's owned sets of one family by name. The other family's
// sets belong to the other family's proxier.
func readIPSets(ctx context.Context, k IPSetKernel, family Family) (map[string]*IPSet, error) {
	sets, err := k.List(ctx, OwnedIPSet)
	if err != nil {
		return nil, err
	}
	m := make(map[string]*IPSet, len(sets))
	for _, s := range sets {
		if s.Family == family {
			m[s.Name] = s
		}
	}
	return m, nil
}
