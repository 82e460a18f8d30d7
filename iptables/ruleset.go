package iptables

import (
	"bytes"
	"slices"

	"github.com/kproxy/kproxy/iptables/iptablestest"
)

// Ruleset is the complete desired content of everything kproxy owns in one IP family:
// every chain in every table, the jumps from the built-in chains into them, and the
// ipsets the rules match against. The renderer produces it from a proxier.State; the
// proxier diffs it against the last applied Ruleset and against the kernel.
//
// A Ruleset and its chains are immutable once built. A renderer may share *ChainRules
// between successive Rulesets when a chain did not change; the proxier relies on that
// only as a fast path (pointer equality), never for correctness.
type Ruleset struct {
	Family Family
	// Tables holds nat, filter and mangle, in that order; each table's chains are
	// sorted by name.
	Tables []*TableRules
	// Jumps are the bootstrap rules in built-in chains (PREROUTING, OUTPUT, ...).
	Jumps []Jump
	// Sets are the ipsets rules refer to; they must exist before rules using them
	// are restored.
	Sets []*IPSet
}

// TableRules is the content of the chains kproxy owns in one table.
type TableRules struct {
	Table  Table
	Chains []*ChainRules
}

// ChainRules is one chain and its rules. Each rule is the text iptables-save prints
// after "-A <chain> ", in exactly the canonical form iptables-save uses, so that a
// chain read back from the kernel can be compared with it byte for byte.
type ChainRules struct {
	Name  Chain
	Rules []string
}

// Equal reports whether two chains have the same name and rules.
func (c *ChainRules) Equal(o *ChainRules) bool {
	return c == o || (c != nil && o != nil && c.Name == o.Name && slices.Equal(c.Rules, o.Rules))
}

// IPSet is the desired content of one ipset.
type IPSet struct {
	Name string
	// Type is the ipset type, e.g. "hash:ip,port,ip".
	Type    string
	Family  Family
	Entries []string // as `ipset save` prints them, sorted
}

// Table returns the rules of one table, or nil.
func (rs *Ruleset) Table(t Table) *TableRules {
	for _, tr := range rs.Tables {
		if tr.Table == t {
			return tr
		}
	}
	return nil
}

// Chain returns one chain, or nil. Chains are sorted, so this is a binary search.
func (tr *TableRules) Chain(name Chain) *ChainRules {
	if tr == nil {
		return nil
	}
	i, ok := slices.BinarySearchFunc(tr.Chains, name, func(c *ChainRules, n Chain) int {
		switch {
		case c.Name < n:
			return -1
		case c.Name > n:
			return 1
		}
		return 0
	})
	if !ok {
		return nil
	}
	return tr.Chains[i]
}

// Payload returns the iptables-restore --noflush input that writes every chain of the
// ruleset: each chain is declared (which creates or flushes it) and filled. It does
// not delete stale chains; the proxier adds that from its diff.
func (rs *Ruleset) Payload() []byte {
	var b bytes.Buffer
	for _, tr := range rs.Tables {
		WriteTable(&b, tr.Table, tr.Chains, nil)
	}
	return b.Bytes()
}

// WriteTable appends one iptables-restore table block: declarations and rules of
// chains, then -X for each chain in deleted (which the same block must have emptied of
// references), then COMMIT.
func WriteTable(b *bytes.Buffer, table Table, chains []*ChainRules, deleted []Chain) {
	b.WriteString("*")
	b.WriteString(string(table))
	b.WriteByte('\n')
	for _, c := range chains {
		b.WriteByte(':')
		b.WriteString(string(c.Name))
		b.WriteString(" - [0:0]\n")
	}
	for _, name := range deleted {
		// Declaring flushes the chain, so -X succeeds even if it still had rules.
		b.WriteByte(':')
		b.WriteString(string(name))
		b.WriteString(" - [0:0]\n")
	}
	for _, c := range chains {
		for _, r := range c.Rules {
			b.WriteString("-A ")
			b.WriteString(string(c.Name))
			b.WriteByte(' ')
			b.WriteString(r)
			b.WriteByte('\n')
		}
	}
	for _, name := range deleted {
		b.WriteString("-X ")
		b.WriteString(string(name))
		b.WriteByte('\n')
	}
	b.WriteString("COMMIT\n")
}

// TracerSets returns the ruleset's ipsets in the form the packet tracer
// (iptablestest.Trace) reads, so a rendered ruleset can be walked without a kernel.
func (rs *Ruleset) TracerSets() map[string]iptablestest.Set {
	out := make(map[string]iptablestest.Set, len(rs.Sets))
	for _, s := range rs.Sets {
		fam := "inet"
		if s.Family == IPv6 {
			fam = "inet6"
		}
		out[s.Name] = iptablestest.Set{Type: s.Type, Family: fam, Entries: s.Entries}
	}
	return out
}
