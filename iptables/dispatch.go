package iptables

import (
	"slices"

	"github.com/kproxy/kproxy/proxier"
)

// A dispatcher turns the per-destination rules of one top-level chain (say nat
// KUBE-SERVICES: "-d 10.96.0.10/32 -p tcp ... --dport 80 -j KUBE-SVC-...") into a
// dispatch tree, so that the first packet of a connection walks O(log n) rules instead
// of all of them, as it does in kube-proxy's flat chain.
//
// The tree branches on the key (destination address, or protocol and port) four bits
// at a time. A group of at most leaf distinct keys is written out as plain rules; a
// larger group is split on the first nibble where its keys differ, every child with
// two or more keys becomes a KUBE-SVC-DST- chain entered by one rule matching the child's
// longest common prefix ("-d 10.96.16.0/20 -j KUBE-SVC-DST-..."), and a child with a
// single key is written inline. Levels where every key shares a nibble make no chain
// (path compression), so the depth is about log16(n/leaf) whatever the address plan.
//
// The tree is a pure function of the set of keys and their rules: rules of one key
// keep their order (service ports sorted by name), keys are laid out in key order, and
// chain names hash the prefix. Adding one key therefore changes only the chains on
// its path, and the incremental build below reuses every subtree without a changed
// key, chain pointers included.
type dispatcher struct {
	table Table
	root  Chain
	space keySpace
	leaf  int

	entries []*dispatchEntry // sorted by key; rebuilt lazily from byKey
	byKey   map[dispatchKey]*dispatchEntry
	// added and gone are keys that appeared or disappeared since the last build.
	added, gone []*dispatchEntry
	// dirty are keys whose rules changed since the last build.
	dirty []dispatchKey

	tree *dispatchNode
	gen  uint64
	b    ruleBuilder
}

// dispatchEntry is one key with the rules all service ports contribute for it.
type dispatchEntry struct {
	key      dispatchKey
	contribs []dispatchContrib // sorted by owner
	rules    []string          // contribs' rules, concatenated
}

// dispatchContrib is one service port's rules for one key.
type dispatchContrib struct {
	owner proxier.ServicePortName
	rules []string
}

// dispatchNode is a chain of the tree (or the root, whose rules go into the top-level
// chain itself).
type dispatchNode struct {
	key      dispatchKey
	n        int // prefix length in nibbles
	chain    *ChainRules
	rules    []string // the node's rules (chain.Rules, or the root's)
	branch   string   // the rule in the parent that enters this node
	children []*dispatchNode
	// kept is set on a rebuilt node whose own chain did not change.
	kept bool
	// reused is the build generation that last kept this node as it was; the
	// chains a build added or removed are found without walking kept subtrees.
	reused uint64
}

func newDispatcher(table Table, root Chain, space keySpace, leaf int) *dispatcher {
	return &dispatcher{table: table, root: root, space: space, leaf: leaf, byKey: map[dispatchKey]*dispatchEntry{}}
}

// set records owner's rules for key, replacing what owner had there.
func (d *dispatcher) set(owner proxier.ServicePortName, key dispatchKey, rules []string) {
	e := d.byKey[key]
	if e == nil {
		e = &dispatchEntry{key: key}
		d.byKey[key] = e
		d.added = append(d.added, e)
	}
	i, found := slices.BinarySearchFunc(e.contribs, owner, func(c dispatchContrib, o proxier.ServicePortName) int {
		return c.owner.Compare(o)
	})
	if found {
		if slices.Equal(e.contribs[i].rules, rules) {
			return
		}
		e.contribs[i].rules = rules
	} else {
		e.contribs = slices.Insert(e.contribs, i, dispatchContrib{owner: owner, rules: rules})
	}
	d.touch(e)
}

// remove drops owner's rules for key.
func (d *dispatcher) remove(owner proxier.ServicePortName, key dispatchKey) {
	e := d.byKey[key]
	if e == nil {
		return
	}
	i, found := slices.BinarySearchFunc(e.contribs, owner, func(c dispatchContrib, o proxier.ServicePortName) int {
		return c.owner.Compare(o)
	})
	if !found {
		return
	}
	e.contribs = slices.Delete(e.contribs, i, i+1)
	if len(e.contribs) == 0 {
		delete(d.byKey, key)
		d.gone = append(d.gone, e)
	}
	d.touch(e)
}

// touch recomputes an entry's rules and marks its key dirty.
func (d *dispatcher) touch(e *dispatchEntry) {
	if len(e.contribs) == 1 {
		e.rules = e.contribs[0].rules
	} else {
		e.rules = nil
		for _, c := range e.contribs {
			e.rules = append(e.rules, c.rules...)
		}
	}
	d.dirty = append(d.dirty, e.key)
}

// dispatchResult is what one build changed.
type dispatchResult struct {
	// changed reports that the rules for the top-level chain (tree.rules) changed.
	changed bool
	// upserts are dispatch chains created or rewritten; removed those deleted.
	upserts []*ChainRules
	removed []Chain
}

// build brings the tree up to date with the recorded changes.
func (d *dispatcher) build() dispatchResult {
	if len(d.dirty) == 0 && d.tree != nil {
		return dispatchResult{}
	}
	d.mergeEntries()
	slices.SortFunc(d.dirty, dispatchKey.compare)
	d.dirty = slices.Compact(d.dirty)
	d.gen++

	old := d.tree
	root := &dispatchNode{}
	root.rules, root.children = d.group(d.entries, old)
	d.tree = root
	d.dirty = d.dirty[:0]

	res := dispatchResult{changed: old == nil || !slices.Equal(old.rules, root.rules)}
	// Chains of nodes this build created are new or rewritten; chains of old nodes
	// it neither kept nor recreated are gone.
	fresh := map[Chain]bool{}
	root.walk(func(n *dispatchNode) bool {
		if n.reused == d.gen {
			return false
		}
		if n.chain != nil {
			fresh[n.chain.Name] = true
			if !n.kept {
				res.upserts = append(res.upserts, n.chain)
			}
		}
		return true
	})
	if old != nil {
		old.walk(func(n *dispatchNode) bool {
			if n.reused == d.gen {
				return false
			}
			if n.chain != nil && !fresh[n.chain.Name] {
				res.removed = append(res.removed, n.chain.Name)
			}
			return true
		})
	}
	return res
}

// mergeEntries folds the keys added and removed since the last build into the sorted
// entry list, in one pass.
func (d *dispatcher) mergeEntries() {
	if len(d.added) == 0 && len(d.gone) == 0 {
		return
	}
	keep := d.entries[:0:0]
	if len(d.gone) == 0 {
		keep = d.entries
	} else {
		keep = make([]*dispatchEntry, 0, len(d.entries))
		for _, e := range d.entries {
			if d.byKey[e.key] == e {
				keep = append(keep, e)
			}
		}
	}
	var add []*dispatchEntry
	for _, e := range d.added {
		if d.byKey[e.key] == e {
			add = append(add, e)
		}
	}
	slices.SortFunc(add, func(a, b *dispatchEntry) int { return a.key.compare(b.key) })
	merged := make([]*dispatchEntry, 0, len(keep)+len(add))
	i := 0
	for _, e := range add {
		j, _ := slices.BinarySearchFunc(keep[i:], e.key, func(x *dispatchEntry, k dispatchKey) int { return x.key.compare(k) })
		merged = append(merged, keep[i:i+j]...)
		merged = append(merged, e)
		i += j
	}
	d.entries = append(merged, keep[i:]...)
	d.added, d.gone = d.added[:0], d.gone[:0]
}

// group lays out the entries under one node and returns the node's rules and child
// chains. old is the previous tree, searched for subtrees that can be kept as they are.
func (d *dispatcher) group(entries []*dispatchEntry, old *dispatchNode) ([]string, []*dispatchNode) {
	var rules []string
	if len(entries) <= d.leaf {
		for _, e := range entries {
			rules = append(rules, e.rules...)
		}
		return rules, nil
	}
	groups := d.split(entries)
	inline := d.inlined(groups)
	var children []*dispatchNode
	for i, g := range groups {
		if inline[i] {
			for _, e := range g {
				rules = append(rules, e.rules...)
			}
			continue
		}
		child := d.child(g, old)
		rules = append(rules, child.branch)
		children = append(children, child)
	}
	return rules, children
}

// split cuts sorted entries (more than one key) on the first nibble where their keys
// differ, into at most 16 groups in key order.
func (d *dispatcher) split(entries []*dispatchEntry) [][]*dispatchEntry {
	at := commonNibbles(entries[0].key, entries[len(entries)-1].key, d.space.nibbles())
	var groups [][]*dispatchEntry
	for i := 0; i < len(entries); {
		nib := entries[i].key.nibble(at)
		j := i + 1
		for j < len(entries) && entries[j].key.nibble(at) == nib {
			j++
		}
		groups = append(groups, entries[i:j])
		i = j
	}
	return groups
}

// inlined decides which groups are written into the parent chain instead of getting
// a chain of their own: single keys always, then the smallest groups while the
// parent stays within twice the leaf size (counting a child chain as one key). A
// packet then never walks more than two leaves' worth of rules per level, as it
// would through a branch rule and a full child, while the tree avoids the many
// two- and three-key chains a plain split leaves at its bottom level. The choice
// depends only on the group sizes, so the tree stays a function of the key set.
func (d *dispatcher) inlined(groups [][]*dispatchEntry) []bool {
	inline := make([]bool, len(groups))
	order := make([]int, 0, len(groups))
	for i, g := range groups {
		if len(g) == 1 {
			inline[i] = true
		} else {
			order = append(order, i)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int { return len(groups[a]) - len(groups[b]) })
	cost := len(groups)
	for _, i := range order {
		if cost+len(groups[i])-1 > 2*d.leaf {
			break
		}
		inline[i] = true
		cost += len(groups[i]) - 1
	}
	return inline
}

// child returns the node for a group of two or more entries: the old one when no key
// under its prefix changed, else a new one.
func (d *dispatcher) child(g []*dispatchEntry, old *dispatchNode) *dispatchNode {
	n := commonNibbles(g[0].key, g[len(g)-1].key, d.space.nibbles())
	key := g[0].key.prefix(n)
	prev := old.find(key, n)
	if prev != nil && !d.dirtyUnder(key, n) {
		prev.reused = d.gen
		return prev
	}
	node := &dispatchNode{key: key, n: n}
	node.rules, node.children = d.group(g, old)
	if prev != nil && slices.Equal(prev.rules, node.rules) {
		// Only something below changed: keep the chain (and its pointer).
		node.chain, node.branch, node.kept = prev.chain, prev.branch, true
		return node
	}
	name := dispatchChainName(d.table, d.root, d.space.describe(key, n))
	node.chain = &ChainRules{Name: name, Rules: node.rules}
	node.branch = d.space.branchRule(&d.b, key, n, name)
	return node
}

// dirtyUnder reports whether a key under the prefix changed since the last build.
func (d *dispatcher) dirtyUnder(key dispatchKey, n int) bool {
	i, _ := slices.BinarySearchFunc(d.dirty, key, dispatchKey.compare)
	return i < len(d.dirty) && d.dirty[i].compare(key.last(n)) <= 0
}

// find returns the node of the tree rooted at t with exactly this prefix, or nil.
func (t *dispatchNode) find(key dispatchKey, n int) *dispatchNode {
	for cur := t; cur != nil; {
		if cur.n == n && cur.key == key {
			return cur
		}
		var next *dispatchNode
		for _, c := range cur.children {
			if c.n <= n && key.prefix(c.n) == c.key {
				next = c
				break
			}
		}
		cur = next
	}
	return nil
}

// walk visits the tree in pre-order; visit returns false to skip a node's children.
func (t *dispatchNode) walk(visit func(*dispatchNode) bool) {
	if !visit(t) {
		return
	}
	for _, c := range t.children {
		c.walk(visit)
	}
}
