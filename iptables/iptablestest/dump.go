package iptablestest

import (
	"strings"
)

// Dump is a parsed iptables-save or ip6tables-save text: several tables,
// their chains and rules, plus the comment lines around the tables so the
// dump can be written back unchanged. A Dump is read-only once parsed: the
// tracer relies on indexes built by ParseDump.
type Dump struct {
	// Tables in the order they appear in the text.
	Tables []*Table
	// Trailer holds the comment and blank lines after the last COMMIT.
	Trailer []string

	tables map[string]*Table
	family int
}

// Table is one "*name ... COMMIT" block.
type Table struct {
	// Name is the table name: raw, mangle, nat, filter or security.
	Name string
	// Header holds the comment and blank lines between the previous COMMIT
	// (or the start of the text) and the "*name" line.
	Header []string
	// Chains in declaration order; built-in chains that receive rules
	// without being declared are appended when first used.
	Chains []*Chain

	chains map[string]*Chain
}

// Chain is a built-in or user-defined chain.
type Chain struct {
	// Name of the chain.
	Name string
	// Table is the name of the table the chain belongs to.
	Table string
	// Policy is ACCEPT or DROP for built-in chains and "-" for user chains.
	Policy string
	// Counters is the "[packets:bytes]" text of the declaration, if any.
	Counters string
	// Declared reports whether the chain had a ":NAME POLICY" line; a
	// built-in chain may be used without one (it then has policy ACCEPT).
	Declared bool
	// Rules in order; Rules[i].Num == i+1.
	Rules []*Rule
}

// BuiltIn reports whether the chain is one of its table's hook chains,
// whose policy applies when a packet falls off its end.
func (c *Chain) BuiltIn() bool { return isBuiltinChain(c.Table, c.Name) }

// Rule is one "-A CHAIN ..." line, kept both as text (for traces and
// re-serialisation) and in a generic parsed form (for inspection).
type Rule struct {
	// Table and Chain name where the rule lives.
	Table, Chain string
	// Num is the 1-based position of the rule in its chain, as
	// `iptables -L --line-numbers` shows it.
	Num int
	// Line is the 1-based line number in the parsed text.
	Line int
	// Counters is the "[packets:bytes]" prefix of `iptables-save -c`, if any.
	Counters string
	// Text is the original rule text starting at "-A", without counters.
	Text string
	// Base holds the protocol-independent options (-s, -d, -p, -i, -o, -f).
	Base []Option
	// Matches holds the match modules in rule order, including the implicit
	// protocol match that "-p tcp --dport 80" loads without "-m tcp".
	Matches []Match
	// Target is the -j or -g argument, or "" when the rule has none.
	Target string
	// Goto reports that the target was given with -g.
	Goto bool
	// TargetOptions are the options of the target (e.g. --to-destination).
	TargetOptions []Option

	matchers []matcher
	target   target
	// deferred is a problem (unknown module, option or target) that makes
	// the rule impossible to evaluate; it is reported when a packet reaches
	// the part of the rule concerned, and by Dump.Validate.
	deferred []error
}

// String returns the original rule text.
func (r *Rule) String() string { return r.Text }

// Option is a generic parsed option: name (canonical spelling, e.g.
// "--dport" for "--destination-port"), its arguments and whether it was
// negated with "!".
type Option struct {
	// Name is the canonical option name, e.g. "-s" or "--dport".
	Name string
	// Negated reports a "!" before the option (or, in the deprecated
	// form, right after it).
	Negated bool
	// Values are the option's arguments, unquoted.
	Values []string
}

// Match is one match module ("-m NAME") and its options.
type Match struct {
	// Module is the match name, e.g. "tcp", "comment", "statistic".
	Module string
	// Implicit reports a protocol match loaded by -p rather than -m.
	Implicit bool
	// Options in rule order.
	Options []Option
}

// ParseDump parses iptables-save / ip6tables-save output (or a
// iptables-restore input made of *table, :CHAIN, -A and COMMIT lines). It
// fails with a *ParseError naming the line of anything it cannot
// understand, and validates the values of every option the tracer
// evaluates. Match modules and targets it does not know are accepted here
// and reported when a packet reaches them (see Dump.Validate to check them
// eagerly).
func ParseDump(text string) (*Dump, error) {
	return parseDump(text)
}

// Table returns the named table, or nil.
func (d *Dump) Table(name string) *Table {
	return d.tables[name]
}

// Chain returns the named chain of the named table, or nil.
func (d *Dump) Chain(table, name string) *Chain {
	t := d.tables[table]
	if t == nil {
		return nil
	}
	return t.chains[name]
}

// Chain returns the named chain, or nil.
func (t *Table) Chain(name string) *Chain {
	return t.chains[name]
}

// String re-serialises the dump canonically: for each table its header
// comments, "*name", the chain declarations, then every chain's rules in
// chain order, then COMMIT; finally the trailer. For normalised
// iptables-save output this is byte-identical to the parsed text. Comments
// inside a table body are not kept, and rules are grouped by chain.
func (d *Dump) String() string {
	var b strings.Builder
	for _, t := range d.Tables {
		for _, h := range t.Header {
			b.WriteString(h)
			b.WriteByte('\n')
		}
		b.WriteByte('*')
		b.WriteString(t.Name)
		b.WriteByte('\n')
		for _, c := range t.Chains {
			if !c.Declared {
				continue
			}
			b.WriteByte(':')
			b.WriteString(c.Name)
			b.WriteByte(' ')
			b.WriteString(c.Policy)
			if c.Counters != "" {
				b.WriteByte(' ')
				b.WriteString(c.Counters)
			}
			b.WriteByte('\n')
		}
		for _, c := range t.Chains {
			for _, r := range c.Rules {
				if r.Counters != "" {
					b.WriteString(r.Counters)
					b.WriteByte(' ')
				}
				b.WriteString(r.Text)
				b.WriteByte('\n')
			}
		}
		b.WriteString("COMMIT\n")
	}
	for _, l := range d.Trailer {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// builtinChains lists the hook chains of each table the tracer knows.
var builtinChains = map[string][]string{
	"raw":      {"PREROUTING", "OUTPUT"},
	"mangle":   {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
	"nat":      {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	"filter":   {"INPUT", "FORWARD", "OUTPUT"},
	"security": {"INPUT", "FORWARD", "OUTPUT"},
}

func isBuiltinChain(table, chain string) bool {
	for _, c := range builtinChains[table] {
		if c == chain {
			return true
		}
	}
	return false
}
