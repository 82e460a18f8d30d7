package stress

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/kproxy/kproxy/iptables"
	"github.com/kproxy/kproxy/iptables/iptablestest"
	"github.com/kproxy/kproxy/test/netns"
)

// kernelDiff compares what the namespace's kernel holds with a rendered ruleset and
// returns the differences (empty when they agree):
//
//   - every rendered chain exists with exactly the rendered rules, in order: kproxy
//     writes chains whole and the kernel keeps rule order, so no normalisation is
//     needed beyond dropping counters (the parser keeps them apart);
//   - no other kproxy-owned chain exists (a stale KUBE-SVC- of a deleted service);
//   - every bootstrap jump is in its built-in chain;
//   - every rendered ipset holds exactly the rendered entries.
func kernelDiff(ctx context.Context, ns *netns.NS, backend iptables.Backend, rs *iptables.Ruleset) ([]string, error) {
	out, err := ns.Command(ctx, "iptables-"+string(backend)+"-save").Output()
	if err != nil {
		return nil, fmt.Errorf("iptables-%s-save: %w\n%s", backend, err, out)
	}
	dump, err := iptablestest.ParseDump(string(out))
	if err != nil {
		return nil, fmt.Errorf("parsing iptables-save: %w", err)
	}
	var diffs []string
	for _, tr := range rs.Tables {
		kt := dump.Table(string(tr.Table))
		if kt == nil {
			diffs = append(diffs, fmt.Sprintf("table %s: not in the kernel", tr.Table))
			continue
		}
		for _, c := range tr.Chains {
			diffs = append(diffs, chainDiff(tr.Table, c, kt.Chain(string(c.Name)))...)
		}
		for _, kc := range kt.Chains {
			if iptables.OwnedChain(tr.Table, iptables.Chain(kc.Name)) && tr.Chain(iptables.Chain(kc.Name)) == nil {
				diffs = append(diffs, fmt.Sprintf("%s %s: stale chain in the kernel (%d rules)", tr.Table, kc.Name, len(kc.Rules)))
			}
		}
	}
	for _, j := range rs.Jumps {
		from := dump.Chain(string(j.Table), string(j.From))
		if from == nil || !slices.ContainsFunc(from.Rules, func(r *iptablestest.Rule) bool { return r.Target == string(j.To) }) {
			diffs = append(diffs, fmt.Sprintf("%s %s: no bootstrap jump to %s", j.Table, j.From, j.To))
		}
	}
	for _, s := range rs.Sets {
		got, err := setEntries(ctx, ns, s.Name)
		if err != nil {
			return nil, err
		}
		if !slices.Equal(got, s.Entries) {
			diffs = append(diffs, fmt.Sprintf("ipset %s: kernel has %d entries %q, rendered %d %q", s.Name, len(got), got, len(s.Entries), s.Entries))
		}
	}
	return diffs, nil
}

// chainDiff reports the first rule where the kernel's copy of a chain departs from the
// rendered one, and a length difference.
func chainDiff(table iptables.Table, want *iptables.ChainRules, got *iptablestest.Chain) []string {
	if got == nil {
		return []string{fmt.Sprintf("%s %s: not in the kernel (%d rules rendered)", table, want.Name, len(want.Rules))}
	}
	prefix := "-A " + string(want.Name) + " "
	var have []string
	for _, r := range got.Rules {
		have = append(have, strings.TrimPrefix(r.Text, prefix))
	}
	if slices.Equal(have, want.Rules) {
		return nil
	}
	for i := range max(len(have), len(want.Rules)) {
		var g, w string
		if i < len(have) {
			g = have[i]
		}
		if i < len(want.Rules) {
			w = want.Rules[i]
		}
		if g != w {
			return []string{fmt.Sprintf("%s %s (kernel %d rules, rendered %d) rule %d:\n    kernel:   %s\n    rendered: %s",
				table, want.Name, len(have), len(want.Rules), i+1, g, w)}
		}
	}
	return nil
}

// setEntries returns an ipset's members as `ipset save` prints them, sorted like the
// renderer sorts them.
func setEntries(ctx context.Context, ns *netns.NS, name string) ([]string, error) {
	out, err := ns.Command(ctx, "ipset", "save", name).Output()
	if err != nil {
		return nil, fmt.Errorf("ipset save %s: %w\n%s", name, err, out)
	}
	var entries []string
	for _, l := range strings.Split(string(out), "\n") {
		if e, ok := strings.CutPrefix(l, "add "+name+" "); ok {
			entries = append(entries, e)
		}
	}
	slices.Sort(entries)
	return entries, nil
}
