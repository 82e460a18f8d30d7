package iptables

import (
	"fmt"
	"strings"
)

// SavedRule is one rule read back from the kernel, outside the owned chains, that
// jumps (-j or -g) to an owned chain.
type SavedRule struct {
	// Chain holds the rule.
	Chain Chain
	// Spec is the text after "-A CHAIN ", as iptables-save printed it; it can be fed
	// back to iptables-restore as "-D CHAIN <Spec>".
	Spec string
	// Target is the owned chain the rule jumps to.
	Target Chain
}

// SavedTable is what the proxier needs to know about one table of the kernel: the
// owned chains and their rules, and the rules elsewhere that refer to owned chains.
// Foreign chains' rules are not kept.
type SavedTable struct {
	// Table is the table's name.
	Table Table
	// Chains maps every owned chain that exists to its rules (the text after
	// "-A CHAIN "), in kernel order. An existing empty chain maps to an empty slice.
	Chains map[Chain][]string
	// BuiltinJumps are the rules in built-in chains that jump to an owned chain: the
	// bootstrap jumps, kproxy's or a previous kube-proxy's.
	BuiltinJumps []SavedRule
	// ForeignRefs are the rules in foreign user chains that jump to an owned chain.
	// Such a chain cannot be deleted without touching the foreign rule.
	ForeignRefs []SavedRule
}

// Saved is the parsed iptables-save output of one family.
type Saved struct {
	// Tables holds every table the text contained.
	Tables map[Table]*SavedTable
	// Lines counts the lines read, for logs and benchmarks.
	Lines int
}

// Table returns the parsed table, or nil when it was not in the output.
func (s *Saved) Table(t Table) *SavedTable {
	if s == nil {
		return nil
	}
	return s.Tables[t]
}

// ParseSaved reads iptables-save text and keeps only what the proxier needs: owned
// chains (per OwnedChain) with their rules, and the rules of other chains that jump to
// owned chains. It is a single pass over the text with no per-line allocation for
// foreign rules; owned rules are substrings of one copy of the input. Comment lines and
// counters are ignored.
func ParseSaved(data []byte) (*Saved, error) {
	text := string(data)
	s := &Saved{Tables: map[Table]*SavedTable{}}
	// iptables-save prints all declarations of a table, then its rules grouped by
	// chain, so rules accumulate in run and go into the map once per chain.
	var (
		cur      *SavedTable
		runChain Chain
		runOwned bool
		run      []string
	)
	flushRun := func() {
		if runOwned && cur != nil {
			if prev := cur.Chains[runChain]; len(prev) > 0 {
				run = append(prev, run...) // chain printed in two runs: never seen, but keep order
			}
			cur.Chains[runChain] = run
		}
		runChain, runOwned, run = "", false, nil
	}
	hint := strings.Count(text, "\n:")
	for pos, lineNo := 0, 1; pos < len(text); lineNo++ {
		end := pos + indexByte(text[pos:], '\n')
		line := text[pos:end]
		pos = end + 1
		s.Lines++
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if line == "" {
			continue
		}
		switch line[0] {
		case '#':
			continue
		case '*':
			flushRun()
			t := Table(line[1:])
			cur = s.Tables[t]
			if cur == nil {
				cur = &SavedTable{Table: t, Chains: make(map[Chain][]string, hint)}
				s.Tables[t] = cur
			}
			continue
		}
		if cur == nil {
			return nil, fmt.Errorf("iptables-save line %d: %q outside of a table", lineNo, truncate(line))
		}
		switch {
		case line[0] == '-' && len(line) > 3 && line[1] == 'A' && line[2] == ' ':
			name, spec, _ := cut(line[3:], ' ')
			if Chain(name) != runChain {
				flushRun()
				runChain = Chain(name)
				runOwned = OwnedChain(cur.Table, runChain)
			}
			if runOwned {
				run = append(run, spec)
				continue
			}
			if !strings.Contains(spec, "KUBE-") {
				continue
			}
			target := ruleTarget(spec)
			if target == "" || !OwnedChain(cur.Table, Chain(target)) {
				continue
			}
			r := SavedRule{Chain: Chain(name), Spec: spec, Target: Chain(target)}
			if builtinChain(Chain(name)) {
				cur.BuiltinJumps = append(cur.BuiltinJumps, r)
			} else {
				cur.ForeignRefs = append(cur.ForeignRefs, r)
			}
		case line[0] == ':':
			name, _, _ := cut(line[1:], ' ')
			if OwnedChain(cur.Table, Chain(name)) {
				if _, ok := cur.Chains[Chain(name)]; !ok {
					cur.Chains[Chain(name)] = []string{}
				}
			}
		case line == "COMMIT":
			flushRun()
			cur = nil
		default:
			// Other commands (-I, -N, ...) never appear in iptables-save output.
		}
	}
	flushRun()
	return s, nil
}

// indexByte returns the index of c in s, or len(s).
func indexByte(s string, c byte) int {
	if i := strings.IndexByte(s, c); i >= 0 {
		return i
	}
	return len(s)
}

// cut splits s at the first sep; rest is empty when there is none.
func cut(s string, sep byte) (before, after string, found bool) {
	i := indexByte(s, sep)
	if i == len(s) {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}

// ruleTarget returns the -j or -g argument of a saved rule specification, skipping
// quoted text (a comment may mention "-j KUBE-...").
func ruleTarget(spec string) string {
	words := splitSavedWords(spec)
	for i := len(words) - 2; i >= 0; i-- {
		if words[i] == "-j" || words[i] == "-g" {
			return words[i+1]
		}
	}
	return ""
}

// splitSavedWords splits a saved rule specification into words the way
// iptables-restore reads it: blanks separate words, double quotes group them, and a
// backslash inside quotes escapes the next character.
func splitSavedWords(spec string) []string {
	var (
		words   []string
		word    []byte
		inWord  bool
		inQuote bool
	)
	for i := 0; i < len(spec); i++ {
		c := spec[i]
		switch {
		case inQuote && c == '\\' && i+1 < len(spec):
			i++
			word = append(word, spec[i])
		case inQuote && c == '"':
			inQuote = false
		case inQuote:
			word = append(word, c)
		case c == '"':
			inQuote, inWord = true, true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, string(word))
				word, inWord = word[:0], false
			}
		default:
			word = append(word, c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, string(word))
	}
	return words
}

// truncate shortens a line for an error message.
func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
