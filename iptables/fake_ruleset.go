package iptables

import (
	"bytes"
	"maps"
	"slices"
)

// builtinChains lists each table's built-in chains in the order
// iptables-save prints them.
var builtinChains = map[Table][]Chain{
	TableFilter: {ChainInput, ChainForward, ChainOutput},
	TableNAT:    {ChainPrerouting, ChainInput, ChainOutput, ChainPostrouting},
	TableMangle: {ChainPrerouting, ChainInput, ChainForward, ChainOutput, ChainPostrouting},
	"raw":       {ChainPrerouting, ChainOutput},
	"security":  {ChainInput, ChainForward, ChainOutput},
}

// maxChainNameLen is the longest chain name x_tables accepts
// (XT_EXTENSION_MAXNAMELEN - 1).
const maxChainNameLen = 28

// fakeRule is one rule in canonical form.
type fakeRule struct {
	// spec is the iptables-save text after "-A CHAIN ".
	spec string
	// key identifies the rule for -D (see canonicalRule.key).
	key string
	// target is the -j/-g argument, "" when none.
	target string
	// jump is set when target is a user chain (and so holds a reference).
	jump bool
}

// fakeChain is a chain and its rules.
type fakeChain struct {
	name    Chain
	builtin bool
	policy  string
	rules   []fakeRule
}

// clone copies the chain so a transaction can change it privately.
func (c *fakeChain) clone() *fakeChain {
	n := *c
	n.rules = slices.Clone(c.rules)
	return &n
}

// fakeTable is one table of one family. Tables are immutable once
// committed: a transaction works on a copy of the maps and clones the
// chains it changes, then the copy replaces the table.
type fakeTable struct {
	name Table
	// exists is false until something created the table; Save without
	// arguments prints only existing tables, like iptables-nft-save.
	exists bool
	chains map[Chain]*fakeChain
	// refs counts the rules jumping (or going) to each user chain.
	refs map[Chain]int
}

// newFakeTable returns a table holding only its built-in chains with
// policy ACCEPT.
func newFakeTable(name Table) *fakeTable {
	t := &fakeTable{name: name, chains: map[Chain]*fakeChain{}, refs: map[Chain]int{}}
	for _, c := range builtinChains[name] {
		t.chains[c] = &fakeChain{name: c, builtin: true, policy: "ACCEPT"}
	}
	return t
}

// fork returns a shallow copy of t that shares the chains; callers must
// clone a chain before changing it (see tableTx.mutable).
func (t *fakeTable) fork() *fakeTable {
	return &fakeTable{name: t.name, exists: t.exists, chains: maps.Clone(t.chains), refs: maps.Clone(t.refs)}
}

// userChains returns the user-defined chain names sorted the way
// iptables-save (both variants) sorts them: bytewise.
func (t *fakeTable) userChains() []Chain {
	var names []Chain
	for n, c := range t.chains {
		if !c.builtin {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// save appends the table in iptables-save format (without the "#"
// header and trailer comments; counters are always [0:0]).
func (t *fakeTable) save(buf *bytes.Buffer) {
	buf.WriteString("*" + string(t.name) + "\n")
	order := append(slices.Clone(builtinChains[t.name]), t.userChains()...)
	for _, n := range order {
		c := t.chains[n]
		policy := "-"
		if c.builtin {
			policy = c.policy
		}
		buf.WriteString(":" + string(n) + " " + policy + " [0:0]\n")
	}
	for _, n := range order {
		for _, r := range t.chains[n].rules {
			buf.WriteString("-A " + string(n))
			if r.spec != "" {
				buf.WriteString(" " + r.spec)
			}
			buf.WriteByte('\n')
		}
	}
	buf.WriteString("COMMIT\n")
}

// fakeFamily is the rule space of one family.
type fakeFamily struct {
	tables map[Table]*fakeTable
}

// table returns the committed table, creating an empty (non-existing)
// one on first use.
func (f *fakeFamily) table(name Table) *fakeTable {
	t := f.tables[name]
	if t == nil {
		t = newFakeTable(name)
		f.tables[name] = t
	}
	return t
}

// knownTable reports whether the kernel has such a table.
func knownTable(name Table) bool {
	_, ok := builtinChains[name]
	return ok
}

// sortedTables returns the table names in a stable order for Save and
// Dump (alphabetical; the real tools use kernel registration order).
func sortedTables(m map[Table]*fakeTable) []Table {
	names := slices.Collect(maps.Keys(m))
	slices.Sort(names)
	return names
}
