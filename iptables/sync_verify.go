package iptables

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// DefaultFullReadBackEvery is Options.FullReadBackEvery's default: on iptables-nft
// every tenth periodic full sync reads every rule back, the others check a sample.
const DefaultFullReadBackEvery = 10

// sampleWindow is how many hash-named chains (per-service and dispatch chains) a
// sampled verification lists besides the fixed ones; the window moves on by this
// much every time, so all of them are visited in turn.
const sampleWindow = 256

// A periodic full sync exists to find and repair what others did to the rules: a
// firewall reload that flushed the tables, a chain emptied or edited by hand. Reading
// everything back with iptables-nft-save is what costs: at 10,000 services it takes
// over two seconds (most of it comparing chain names, super-linear in their number,
// then printing every rule), five times the legacy backend. So on iptables-nft, when
// the proxier knows what it last wrote, a periodic full sync only lists, with one
// "iptables-restore --noflush" call of "-S CHAIN" commands (see
// ExecKernel.saveChains):
//
//   - the canary chains, which a table flush or a firewall reload removes;
//   - the built-in chains holding the bootstrap jumps, and every other owned chain
//     with a fixed name (KUBE-SERVICES, KUBE-NODEPORTS, KUBE-POSTROUTING,
//     KUBE-FORWARD, ...), through which all traffic enters kproxy's rules;
//   - a window of sampleWindow hash-named chains (KUBE-SVC-, KUBE-SVC-DST-, ...), a
//     different window each time.
//
// If all of them hold exactly what was last written, the kernel is taken to hold the
// last applied ruleset and the sync writes the difference to the new one, as a
// partial sync does. Any difference, missing chain or listing error falls back to the
// full read-back, which also runs unconditionally every FullReadBackEvery-th periodic
// sync. The trade-off: an edit inside a per-service chain that the rotating sample has
// not reached yet, a stale chain or a foreign rule someone added, is repaired by that
// unconditional read-back (by default within ten sync periods) instead of by the next
// periodic sync; flushes and anything touching the entry points are still repaired at
// the next one.

// chainSaver is implemented by kernels that can read a few chains back without
// dumping every table.
type chainSaver interface {
	// saveChains returns iptables-save text holding exactly the chains named, per
	// table; a chain that does not exist is an error.
	saveChains(ctx context.Context, family Family, chains []tableChains) ([]byte, error)
}

// tableChains names chains of one table.
type tableChains struct {
	table  Table
	chains []Chain
}

// hashedChain reports whether an owned chain belongs to one of the hash-named
// families (per service port or per dispatch prefix).
func hashedChain(c Chain) bool {
	for _, p := range ownedChainPrefixes {
		if strings.HasPrefix(string(c), p) {
			return true
		}
	}
	return false
}

// sampleDue reports whether this full sync may verify a sample instead of reading
// everything back.
func (p *Proxier) sampleDue() bool {
	return p.saver != nil && p.applied != nil && p.readBackEvery > 1 && p.sampledRuns < p.readBackEvery-1
}

// sampleChains picks the chains to list: per table the built-in chains holding
// bootstrap jumps and the fixed-name owned chains, then the next window of
// hash-named chains.
func (p *Proxier) sampleChains(applied *Ruleset) []tableChains {
	var out []tableChains
	type ref struct {
		t int
		c Chain
	}
	var hashed []ref
	for _, tr := range applied.Tables {
		tc := tableChains{table: tr.Table}
		for _, j := range applied.Jumps {
			if j.Table == tr.Table && !slices.Contains(tc.chains, j.From) {
				tc.chains = append(tc.chains, j.From)
			}
		}
		for _, c := range tr.Chains {
			if hashedChain(c.Name) {
				hashed = append(hashed, ref{len(out), c.Name})
			} else {
				tc.chains = append(tc.chains, c.Name)
			}
		}
		out = append(out, tc)
	}
	if n := min(sampleWindow, len(hashed)); n > 0 {
		start := p.sampleCursor % len(hashed)
		for k := range n {
			r := hashed[(start+k)%len(hashed)]
			out[r.t].chains = append(out[r.t].chains, r.c)
		}
		p.sampleCursor = (start + n) % len(hashed)
	}
	return out
}

// verifySample lists the sample and compares it with the last applied ruleset. It
// returns the number of chains checked, or an error describing the first
// difference (or why the listing failed).
func (p *Proxier) verifySample(ctx context.Context) (int, error) {
	chains := p.sampleChains(p.applied)
	text, err := p.saver.saveChains(ctx, p.family, chains)
	if err != nil {
		return 0, err
	}
	saved, err := ParseSaved(text)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, tc := range chains {
		n += len(tc.chains)
		st := saved.Table(tc.table)
		if st == nil {
			if len(tc.chains) == 0 {
				continue
			}
			return n, fmt.Errorf("table %s not listed", tc.table)
		}
		want := p.applied.Table(tc.table)
		for _, c := range tc.chains {
			if builtinChain(c) {
				continue
			}
			have, ok := st.Chains[c]
			if !ok || !slices.Equal(have, want.Chain(c).Rules) {
				return n, fmt.Errorf("chain %s %s differs", tc.table, c)
			}
		}
		tp := &tablePlan{table: tc.table}
		if missing := planJumps(tp, p.applied.Jumps, st, nil); len(missing) > 0 || len(tp.unjump) > 0 {
			return n, fmt.Errorf("bootstrap jumps of table %s differ", tc.table)
		}
	}
	return n, nil
}
