package iptables

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
)

// EnsureJumps adds the jumps of family that are missing, like EnsureJump for each, but
// with one iptables-save of their tables and at most one iptables-restore: a command
// per check and per insertion costs the IPVS proxier 18 processes on a cold node and 9
// on every full sync. Jumps are recognised by comparing their arguments with the
// saved rules word for word, as the iptables proxier recognises its own, so a rule
// printed differently than Jump.Args would be added again (the kernel tests check the
// forms agree on both backends). It returns the jumps it added.
func EnsureJumps(ctx context.Context, k Kernel, family Family, jumps []Jump) ([]Jump, error) {
	var tables []Table
	for _, j := range jumps {
		if err := j.validate(); err != nil {
			return nil, err
		}
		if !slices.Contains(tables, j.Table) {
			tables = append(tables, j.Table)
		}
	}
	if len(tables) == 0 {
		return nil, nil
	}
	saved, err := k.Save(ctx, family, tables...)
	if err != nil {
		return nil, err
	}
	missing := missingJumps(saved, jumps)
	if len(missing) == 0 {
		return nil, nil
	}
	var b bytes.Buffer
	for _, t := range tables {
		header := false
		for _, j := range missing {
			if j.Table != t {
				continue
			}
			if !header {
				fmt.Fprintf(&b, "*%s\n", t)
				header = true
			}
			if j.Position == Append {
				fmt.Fprintf(&b, "-A %s", j.From)
			} else {
				fmt.Fprintf(&b, "-I %s 1", j.From)
			}
			for _, w := range j.Args() {
				b.WriteByte(' ')
				b.WriteString(restoreWord(w))
			}
			b.WriteByte('\n')
		}
		if header {
			b.WriteString("COMMIT\n")
		}
	}
	if err := k.Restore(ctx, family, b.Bytes(), RestoreOptions{}); err != nil {
		return nil, err
	}
	return missing, nil
}

// missingJumps returns the jumps with no equal rule in the iptables-save text, in
// the order given: restored in that order, prepended ones end up as EnsureJump one
// after another would leave them (the last one first). One saved rule satisfies one
// jump.
func missingJumps(saved []byte, jumps []Jump) []Jump {
	found := make([]bool, len(jumps))
	var table Table
	for line := range strings.Lines(string(saved)) {
		line = strings.TrimRight(line, "\n")
		if t, ok := strings.CutPrefix(line, "*"); ok {
			table = Table(t)
			continue
		}
		rest, ok := strings.CutPrefix(line, "-A ")
		if !ok {
			continue
		}
		chain, spec, _ := strings.Cut(rest, " ")
		var words []string
		for i, j := range jumps {
			if found[i] || j.Table != table || string(j.From) != chain {
				continue
			}
			if words == nil {
				words = splitSavedWords(spec)
			}
			if slices.Equal(words, j.Args()) {
				found[i] = true
				break
			}
		}
	}
	var missing []Jump
	for i, j := range jumps {
		if !found[i] {
			missing = append(missing, j)
		}
	}
	return missing
}
