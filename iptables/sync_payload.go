package iptables

import (
	"bytes"
	"cmp"
	"slices"
	"strings"
)

// writePayload renders a plan as iptables-restore --noflush input, one block per
// table in plan order (a cold table may be cut into several blocks; see
// writeSplitTable). Within a block:
//
//  1. every chain written, removed or flushed is declared, which creates it or
//     empties it, so afterwards no owned chain in the block refers to a removed one;
//  2. the rules of the written chains follow (they may jump to any chain of the
//     table: all are declared or already exist);
//  3. stale jumps in built-in chains are deleted by their exact saved text, and
//     missing bootstrap jumps are inserted (their targets exist by now);
//  4. removed chains are deleted, now that nothing refers to them.
//
// The whole block commits atomically or not at all.
func writePayload(b *bytes.Buffer, p *plan) {
	for _, tp := range p.tables {
		if tp.empty() {
			continue
		}
		if p.splitNames > 0 && tp.cold && tp.rules() >= p.splitMinRules {
			writeSplitTable(b, tp, p.splitNames)
			continue
		}
		writeBlock(b, tp)
	}
}

// payloadSize estimates the bytes writePayload writes, within a few percent: a cold
// sync's payload is tens of megabytes at 10,000 services, and growing the buffer by
// doubling would allocate about three times that while the heap is at its largest.
func payloadSize(p *plan) int {
	n := 0
	for _, tp := range p.tables {
		n += 64 * (len(tp.remove) + len(tp.flushOnly) + len(tp.unjump) + len(tp.insert) + 1)
		for _, c := range tp.write {
			n += 2*len(c.Name) + 32 // declaration, COMMIT and split overhead
			for _, r := range c.Rules {
				n += len("-A \n ") + len(c.Name) + len(r)
			}
		}
	}
	return n
}

// writeBlock writes one table block for tp.
func writeBlock(b *bytes.Buffer, tp *tablePlan) {
	b.WriteByte('*')
	b.WriteString(string(tp.table))
	b.WriteByte('\n')
	for _, c := range tp.write {
		declare(b, c.Name)
	}
	for _, name := range tp.remove {
		declare(b, name)
	}
	for _, name := range tp.flushOnly {
		declare(b, name)
	}
	for _, c := range tp.write {
		for _, r := range c.Rules {
			b.WriteString("-A ")
			b.WriteString(string(c.Name))
			if r != "" {
				b.WriteByte(' ')
				b.WriteString(r)
			}
			b.WriteByte('\n')
		}
	}
	for _, r := range tp.unjump {
		b.WriteString("-D ")
		b.WriteString(string(r.Chain))
		if r.Spec != "" {
			b.WriteByte(' ')
			b.WriteString(r.Spec)
		}
		b.WriteByte('\n')
	}
	for _, j := range tp.insert {
		if j.Position == Append {
			b.WriteString("-A ")
			b.WriteString(string(j.From))
		} else {
			b.WriteString("-I ")
			b.WriteString(string(j.From))
			b.WriteString(" 1")
		}
		for _, w := range j.Args() {
			b.WriteByte(' ')
			b.WriteString(restoreWord(w))
		}
		b.WriteByte('\n')
	}
	for _, name := range tp.remove {
		b.WriteString("-X ")
		b.WriteString(string(name))
		b.WriteByte('\n')
	}
	b.WriteString("COMMIT\n")
}

// Splitting a cold table (see tablePlan.cold) into several blocks is what keeps a
// cold start on iptables-nft linear. iptables-nft-restore --noflush (1.8.9) keeps,
// per block, a sorted linked list of every chain name its commands mention (the
// chain, and the jump target), and inserts into it with a linear scan for every
// command: a block costs about commands × names string comparisons. Written as one
// block, 5,000 services (5,800 chains, 62,000 rules) spent 1.0 s of CPU in that scan
// and 10,000 services 4.5 s, more than everything else together; in blocks of at most
// 256 names it is gone (BenchmarkKernelColdSync). The price is the per-block commit:
// the kernel re-validates every chain reachable from a built-in chain at each commit
// (about 110 ms for a live 10,000-service nat table), which is why only cold tables
// are split: in them no owned chain is reachable until the last block, which holds
// the bootstrap jumps. For the same reason the split is invisible to packets: the
// earlier blocks create and fill unreachable chains, and the last one, atomically,
// fills the top-level chains, removes stale chains and inserts the jumps. A failure
// part-way leaves unreachable chains behind, which the next (full) sync reuses or
// deletes. iptables-legacy re-reads and replaces the whole table at every COMMIT, so
// the proxier never splits there.

// Defaults for splitting cold tables on iptables-nft: blocks of at most 256 chain
// and target names (at 10,000 services, 128 to 512 restored within noise of each
// other, 2,048 took 1 s more CPU), for tables that write at least 2,000 rules (below
// that the scan costs a few milliseconds).
const (
	defaultSplitNames    = 256
	defaultSplitMinRules = 2000
)

// writeSplitTable writes a cold table as several blocks: the written chains ordered
// so that each comes after the written chains its rules jump to, cut into blocks of
// at most maxNames distinct chain and target names, the last of which also carries
// the removals and the bootstrap jumps.
func writeSplitTable(b *bytes.Buffer, tp *tablePlan, maxNames int) {
	chunks := splitChains(tp.write, maxNames)
	for _, chunk := range chunks[:len(chunks)-1] {
		writeBlock(b, &tablePlan{table: tp.table, write: chunk})
	}
	last := *tp
	last.write = chunks[len(chunks)-1]
	writeBlock(b, &last)
}

// splitChains orders chains by dependency depth (a chain that jumps to no other
// chain of the list first, then those that jump only to them, and so on; by name
// within a depth) and cuts the order into chunks whose chains and jump targets
// number at most maxNames (a single chain may exceed it). There is always at least
// one chunk.
func splitChains(chains []*ChainRules, maxNames int) [][]*ChainRules {
	index := make(map[Chain]int, len(chains))
	for i, c := range chains {
		index[c.Name] = i
	}
	targets := make([][]Chain, len(chains))
	for i, c := range chains {
		var ts []Chain
		for _, r := range c.Rules {
			if t := jumpTarget(r); t != "" && !slices.Contains(ts, t) {
				ts = append(ts, t)
			}
		}
		targets[i] = ts
	}
	depth := make([]int, len(chains))
	for i := range depth {
		depth[i] = -1
	}
	var depthOf func(i int) int
	depthOf = func(i int) int {
		if depth[i] >= 0 {
			return depth[i]
		}
		depth[i] = 0 // iptables has no loops; this only guards against bad input
		d := 0
		for _, t := range targets[i] {
			if j, ok := index[t]; ok && j != i {
				d = max(d, depthOf(j)+1)
			}
		}
		depth[i] = d
		return d
	}
	order := make([]int, len(chains))
	for i := range order {
		order[i] = i
		depthOf(i)
	}
	slices.SortStableFunc(order, func(a, b int) int {
		if c := cmp.Compare(depth[a], depth[b]); c != 0 {
			return c
		}
		return cmp.Compare(chains[a].Name, chains[b].Name)
	})
	var chunks [][]*ChainRules
	var cur []*ChainRules
	names := map[Chain]bool{}
	for _, i := range order {
		added := 0
		if !names[chains[i].Name] {
			added++
		}
		for _, t := range targets[i] {
			if !names[t] && t != chains[i].Name {
				added++
			}
		}
		if len(cur) > 0 && len(names)+added > maxNames {
			chunks = append(chunks, cur)
			cur = nil
			clear(names)
		}
		cur = append(cur, chains[i])
		names[chains[i].Name] = true
		for _, t := range targets[i] {
			names[t] = true
		}
	}
	return append(chunks, cur)
}

// jumpTarget returns the -j or -g argument of a rendered rule, skipping quoted
// text; "" when there is none.
func jumpTarget(rule string) Chain {
	var target string
	inQuote, next := false, false
	for i := 0; i < len(rule); {
		c := rule[i]
		if c == ' ' && !inQuote {
			i++
			continue
		}
		start := i
		for i < len(rule) && (inQuote || rule[i] != ' ') {
			switch {
			case inQuote && rule[i] == '\\':
				i++
			case rule[i] == '"':
				inQuote = !inQuote
			}
			i++
		}
		word := rule[start:min(i, len(rule))]
		if next {
			target, next = word, false
		} else {
			next = word == "-j" || word == "-g"
		}
	}
	return Chain(target)
}

// restoreWord quotes an argument for iptables-restore when it holds blanks or quotes
// (comments), escaping " and \ inside the quotes.
func restoreWord(w string) string {
	if w != "" && !strings.ContainsAny(w, " \t\"'\\") {
		return w
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(w); i++ {
		if w[i] == '"' || w[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(w[i])
	}
	b.WriteByte('"')
	return b.String()
}

// declare writes a chain declaration.
func declare(b *bytes.Buffer, name Chain) {
	b.WriteByte(':')
	b.WriteString(string(name))
	b.WriteString(" - [0:0]\n")
}
