package iptables

import (
	"maps"
	"slices"
)

// loopbackSet is the hairpin ipset: reference-counted entries (two service ports may
// share an endpoint) and the sorted list last published.
type loopbackSet struct {
	refs           map[string]int
	added, removed []string // entries whose count left or reached zero since publish
	set            *IPSet
}

// update replaces one service port's entries old with new.
func (s *loopbackSet) update(old, new []string) {
	for _, e := range new {
		if s.refs[e]++; s.refs[e] == 1 {
			s.added = append(s.added, e)
		}
	}
	for _, e := range old {
		if s.refs[e]--; s.refs[e] == 0 {
			delete(s.refs, e)
			s.removed = append(s.removed, e)
		}
	}
}

// publish returns the set as of now, the same *IPSet when nothing changed.
func (s *loopbackSet) publish(name string, family Family) *IPSet {
	if s.set != nil && len(s.added) == 0 && len(s.removed) == 0 {
		return s.set
	}
	var entries []string
	if s.set == nil {
		entries = slices.Sorted(maps.Keys(s.refs))
	} else {
		entries = s.patch()
	}
	if len(entries) == 0 {
		entries = nil
	}
	s.added, s.removed = s.added[:0], s.removed[:0]
	s.set = &IPSet{Name: name, Type: loopbackSetType, Family: family, Entries: entries}
	return s.set
}

// patch applies the recorded additions and removals to the published entries.
func (s *loopbackSet) patch() []string {
	prev := s.set.Entries
	var ops []string
	ops = append(ops, s.added...)
	ops = append(ops, s.removed...)
	slices.Sort(ops)
	ops = slices.Compact(ops)
	out := make([]string, 0, len(prev)+len(s.added))
	i := 0
	for _, e := range ops {
		j, found := slices.BinarySearch(prev[i:], e)
		out = append(out, prev[i:i+j]...)
		i += j
		if found {
			i++
		}
		if s.refs[e] > 0 {
			out = append(out, e)
		}
	}
	return append(out, prev[i:]...)
}
