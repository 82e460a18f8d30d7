package reliability

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// proxyTables are the tables whose KUBE- chains the proxies own.
var proxyTables = []string{"nat", "filter", "mangle"}

// ruleset is the proxy-owned part of a node's IPv4 iptables, as iptables-save prints
// it: per table, the KUBE- chains that exist, their rules, and the rules of other
// chains that jump into them, in kernel order within each chain. The order chains are
// listed in (the order they were created in) means nothing to a packet and is not
// kept. Two equal rulesets send every packet the same way.
type ruleset struct {
	chains map[string]bool     // "table/chain" for every KUBE- chain
	rules  map[string][]string // "table/chain" to its rules, for every chain holding one
}

// saveRules reads the node's proxy-owned rules.
func (w *world) saveRules(t *testing.T) ruleset {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rs := ruleset{chains: map[string]bool{}, rules: map[string][]string{}}
	for _, table := range proxyTables {
		out, err := w.node.Exec(ctx, "iptables-save", "-t", table)
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(string(out)) {
			line = strings.TrimSuffix(line, "\n")
			switch {
			case strings.HasPrefix(line, ":KUBE-"):
				name, _, _ := strings.Cut(line[1:], " ")
				rs.chains[table+"/"+name] = true
			case strings.HasPrefix(line, "-A KUBE-"), strings.HasPrefix(line, "-A ") && strings.Contains(line, " -j KUBE-"):
				chain, _, _ := strings.Cut(line[len("-A "):], " ")
				rs.rules[table+"/"+chain] = append(rs.rules[table+"/"+chain], line)
			}
		}
	}
	return rs
}

// chainNames returns the chains, sorted, whose names start with prefix.
func (rs ruleset) chainNames(prefix string) []string {
	var out []string
	for c := range rs.chains {
		if _, name, _ := strings.Cut(c, "/"); strings.HasPrefix(name, prefix) {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out
}

// without drops the chains of other, and every rule jumping to one of them.
func (rs ruleset) without(other ruleset) ruleset {
	out := ruleset{chains: map[string]bool{}, rules: map[string][]string{}}
	for c := range rs.chains {
		if !other.chains[c] {
			out.chains[c] = true
		}
	}
	for c, rules := range rs.rules {
		if other.chains[c] {
			continue
		}
		table, _, _ := strings.Cut(c, "/")
		for _, r := range rules {
			_, target, _ := strings.Cut(r, " -j ")
			target, _, _ = strings.Cut(target, " ")
			if !other.chains[table+"/"+target] {
				out.rules[c] = append(out.rules[c], r)
			}
		}
	}
	return out
}

// diff describes how b differs from a ("-" only in a, "+" only in b, "~" a chain
// whose rules are the same but in another order), or "" when they are equal.
func (a ruleset) diff(b ruleset) string {
	var sb strings.Builder
	for _, c := range sortedUnion(a.chains, b.chains) {
		switch {
		case !b.chains[c]:
			fmt.Fprintf(&sb, "- chain %s\n", c)
		case !a.chains[c]:
			fmt.Fprintf(&sb, "+ chain %s\n", c)
		}
	}
	for _, c := range sortedUnion(a.rules, b.rules) {
		ra, rb := a.rules[c], b.rules[c]
		if slices.Equal(ra, rb) {
			continue
		}
		onlyA, onlyB := minus(ra, rb), minus(rb, ra)
		for _, r := range onlyA {
			fmt.Fprintf(&sb, "- %s %s\n", strings.Split(c, "/")[0], r)
		}
		for _, r := range onlyB {
			fmt.Fprintf(&sb, "+ %s %s\n", strings.Split(c, "/")[0], r)
		}
		if len(onlyA) == 0 && len(onlyB) == 0 {
			fmt.Fprintf(&sb, "~ %s in another order; was:\n  %s\nnow:\n  %s\n", c, strings.Join(ra, "\n  "), strings.Join(rb, "\n  "))
		}
	}
	return sb.String()
}

// sortedUnion returns the keys of both maps, sorted.
func sortedUnion[V any](a, b map[string]V) []string {
	keys := slices.Collect(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// minus returns the lines of a that b lacks.
func minus(a, b []string) []string {
	var out []string
	for _, l := range a {
		if !slices.Contains(b, l) {
			out = append(out, l)
		}
	}
	return out
}
