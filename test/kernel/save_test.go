package kernel

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

// counters matches the packet and byte counters iptables-save prints on chain lines;
// traffic changes them, so they are not part of a ruleset's identity.
var counters = regexp.MustCompile(` \[[0-9]+:[0-9]+\]$`)

// save returns iptables-save of every table in the node namespace with comment lines
// (timestamps, nft's legacy-tables warning) and chain counters removed; nothing else is
// normalised, so two saves are equal exactly when the kernel holds the same rules in the
// same order.
func (w *world) save(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bin := "iptables-" + string(w.backend) + "-save"
	out, err := w.topo.Node.Command(ctx, bin).Output()
	if err != nil {
		t.Fatalf("%s in %s: %v", bin, w.topo.Node, err)
	}
	var b strings.Builder
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		b.WriteString(counters.ReplaceAllString(line, ""))
		b.WriteByte('\n')
	}
	return b.String()
}

// lineDiff shows which lines one text has that the other lacks (as often as they are
// missing), or both texts when only the order differs.
func lineDiff(want, got string) string {
	var b strings.Builder
	missing := func(sign, from, in string) {
		left := map[string]int{}
		for _, l := range strings.Split(in, "\n") {
			left[l]++
		}
		for _, l := range strings.Split(from, "\n") {
			if left[l] > 0 {
				left[l]--
			} else {
				b.WriteString(sign + " " + l + "\n")
			}
		}
	}
	missing("-", want, got)
	missing("+", got, want)
	if b.Len() == 0 {
		return "(same lines, different order)\nwant:\n" + want + "got:\n" + got
	}
	return b.String()
}

// splitLines cuts text into lines without the empty one after the last newline.
func splitLines(text string) []string {
	return strings.Split(strings.TrimSuffix(text, "\n"), "\n")
}

// chainDecl returns the chain a ":CHAIN POLICY" declaration line declares.
func chainDecl(line string) string {
	name, _, _ := strings.Cut(line[1:], " ")
	return name
}

// builtinChains are the kernel's chains in every table.
var builtinChains = map[string]bool{"PREROUTING": true, "INPUT": true, "FORWARD": true, "OUTPUT": true, "POSTROUTING": true}

// foreignPart keeps of a normalised save (see world.save) what does not belong to
// kproxy, in order: every table's header and COMMIT, the declarations of built-in and
// foreign chains ("table/chain" in foreign), the rules of foreign chains, and the rules
// in built-in chains that do not jump to one of kproxy's chains (a KUBE- chain that is
// not foreign). Two foreign parts are equal exactly when nobody added, removed, changed
// or reordered a foreign rule or chain, or changed a built-in chain's policy.
func foreignPart(save string, foreign map[string]bool) string {
	var b strings.Builder
	table := ""
	notOurs := func(chain string) bool { return builtinChains[chain] || foreign[table+"/"+chain] }
	for _, line := range splitLines(save) {
		keep := true
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
		case strings.HasPrefix(line, ":"):
			keep = notOurs(chainDecl(line))
		case strings.HasPrefix(line, "-A "):
			f := strings.Fields(line)
			keep = notOurs(f[1]) && !jumpsToKproxy(f, func(c string) bool { return strings.HasPrefix(c, "KUBE-") && !notOurs(c) })
		}
		if keep {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// ownedPart is the complement of foreignPart without table headers: every line of
// kproxy's, prefixed with its table.
func ownedPart(save string, foreign map[string]bool) []string {
	var out []string
	kept := map[string]int{}
	for _, l := range splitLines(foreignPart(save, foreign)) {
		kept[l]++
	}
	table := ""
	for _, line := range splitLines(save) {
		if strings.HasPrefix(line, "*") {
			table = line[1:]
		}
		if kept[line] > 0 {
			kept[line]--
			continue
		}
		out = append(out, table+": "+line)
	}
	return out
}

// jumpsToKproxy reports whether a rule's words jump (-j) or go (-g) to a chain ours
// says is kproxy's.
func jumpsToKproxy(words []string, ours func(string) bool) bool {
	for i := 0; i+1 < len(words); i++ {
		if (words[i] == "-j" || words[i] == "-g") && ours(words[i+1]) {
			return true
		}
	}
	return false
}
