package iptables

import (
	"bytes"
	"strings"
)

// writePayload renders a plan as iptables-restore --noflush input, one block per
// table in plan order. Within a block:
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
