package iptables

import (
	"cmp"
	"slices"
)

// topChain is a top-level chain laid out by dispatchers: the trees' rules in order,
// then, for nat KUBE-SERVICES, the jumps to KUBE-NODEPORTS, which must come last.
type topChain struct {
	table        Table
	name         Chain
	parts        []dispatchRoot
	nodePortTail bool
}

var topChains = []topChain{
	{TableNAT, topServices, []dispatchRoot{rootNatServices}, true},
	{TableNAT, topNodePorts, []dispatchRoot{rootNatNodePorts}, false},
	{TableFilter, topServices, []dispatchRoot{rootFilterServices}, false},
	{TableFilter, topExternalServices, []dispatchRoot{rootFilterExternal, rootFilterExtPorts}, false},
	{TableFilter, topFirewall, []dispatchRoot{rootFilterFirewall}, false},
	{TableFilter, topNodePorts, []dispatchRoot{rootFilterNodePorts}, false},
}

// assemble brings the dispatch trees and top-level chains up to date and builds the
// Ruleset: from scratch after a reset, otherwise by patching the previous one.
func (r *Renderer) assemble(full bool, pend *pending) *Ruleset {
	var changed [numDispatchRoots]bool
	for i, d := range r.disp {
		res := d.build()
		t := tableIndex(d.table)
		pend.upserts[t] = append(pend.upserts[t], res.upserts...)
		pend.removed[t] = append(pend.removed[t], res.removed...)
		changed[i] = res.changed
	}
	for _, top := range topChains {
		if !full && !slices.ContainsFunc(top.parts, func(p dispatchRoot) bool { return changed[p] }) {
			continue
		}
		var rules []string
		for _, p := range top.parts {
			rules = append(rules, r.disp[p].tree.rules...)
		}
		if top.nodePortTail {
			rules = append(rules, r.nodePortTail...)
		}
		t := tableIndex(top.table)
		pend.upserts[t] = append(pend.upserts[t], &ChainRules{Name: top.name, Rules: rules})
	}

	var nat, filter []*ChainRules
	if full {
		nat = append(pend.upserts[0], r.env.natStaticChains()...)
		filter = append(pend.upserts[1], r.env.filterStaticChains()...)
		slices.SortFunc(nat, compareChainNames)
		slices.SortFunc(filter, compareChainNames)
	} else {
		nat = mergeChains(r.prev.Tables[0].Chains, pend.upserts[0], pend.removed[0])
		filter = mergeChains(r.prev.Tables[1].Chains, pend.upserts[1], pend.removed[1])
	}
	rs := &Ruleset{
		Family: r.opts.Family,
		Tables: []*TableRules{
			{Table: TableNAT, Chains: nat},
			{Table: TableFilter, Chains: filter},
			{Table: TableMangle, Chains: r.mangle},
		},
		Jumps: r.jumps,
		Sets:  []*IPSet{r.loop.publish(r.env.loopbackSetName(), r.opts.Family)},
	}
	r.prev = rs
	return rs
}

func compareChainNames(a, b *ChainRules) int { return cmp.Compare(a.Name, b.Name) }

// mergeChains returns prev (sorted by name) with the removed chains left out and the
// upserts added or replacing their namesakes; an upsert wins over a removal of the
// same name. prev is not modified. Cost: the copy plus a binary search per change.
func mergeChains(prev, upserts []*ChainRules, removed []Chain) []*ChainRules {
	if len(upserts) == 0 && len(removed) == 0 {
		return prev
	}
	type change struct {
		name  Chain
		chain *ChainRules // nil: remove
	}
	changes := make([]change, 0, len(upserts)+len(removed))
	for _, n := range removed {
		changes = append(changes, change{name: n})
	}
	for _, c := range upserts {
		changes = append(changes, change{name: c.Name, chain: c})
	}
	// Stable, so for one name the upsert (appended last) ends up last and wins.
	slices.SortStableFunc(changes, func(a, b change) int { return cmp.Compare(a.name, b.name) })
	out := make([]*ChainRules, 0, len(prev)+len(upserts))
	i := 0
	for k, c := range changes {
		if k+1 < len(changes) && changes[k+1].name == c.name {
			continue
		}
		j, found := slices.BinarySearchFunc(prev[i:], c.name, func(x *ChainRules, n Chain) int { return cmp.Compare(x.Name, n) })
		out = append(out, prev[i:i+j]...)
		i += j
		if found {
			i++
		}
		if c.chain != nil {
			out = append(out, c.chain)
		}
	}
	return append(out, prev[i:]...)
}
