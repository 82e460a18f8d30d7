package iptables

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// fakeRestoreCmd is the Cmd the Fake puts into its ExecErrors.
const fakeRestoreCmd = "iptables-restore (fake)"

// restoreFailure is a rejected payload line: its exit status and message.
type restoreFailure struct {
	code int
	msg  string
}

// Error returns the message iptables would print.
func (f *restoreFailure) Error() string { return f.msg }

// failf builds a restoreFailure with iptables' exit status for the case:
// 2 for input that does not parse, 1 for changes the kernel refuses.
func failf(code int, format string, args ...any) *restoreFailure {
	return &restoreFailure{code: code, msg: fmt.Sprintf(format, args...)}
}

// txEnv is what a transaction needs to know about its surroundings.
type txEnv struct {
	family  Family
	backend Backend
	// setExists, when set, says whether an ipset exists (FakeOptions).
	setExists func(Family, string) bool
}

// tableTx is a pending change to one table, iptables-restore's unit of
// atomicity. It works on a fork of the committed table and clones chains
// before changing them (copy-on-write), so abandoning it changes nothing.
type tableTx struct {
	txEnv
	t     *fakeTable
	owned map[Chain]bool
	// misplaced holds, per chain, a restricted target added to the wrong
	// table in this transaction. nft rejects those when the batch reaches
	// the kernel unless iptables-nft dropped the rule from the batch
	// first, which it does for an explicit "-F CHAIN" (not for ":CHAIN",
	// "-F" or "-D"; verified on 1.8.9). Legacy only sees the final table.
	misplaced map[Chain]*restoreFailure
}

// beginTx forks committed for a transaction; flush empties the fork the
// way iptables-restore without --noflush does.
func beginTx(env txEnv, committed *fakeTable, flush bool) *tableTx {
	tx := &tableTx{txEnv: env, t: committed.fork(), owned: map[Chain]bool{}}
	if flush {
		fresh := newFakeTable(committed.name)
		if env.backend == BackendLegacy {
			// legacy keeps the built-in policies, nft recreates the table.
			for _, c := range builtinChains[committed.name] {
				fresh.chains[c].policy = committed.chains[c].policy
			}
		}
		fresh.exists = committed.exists
		tx.t = fresh
		for c := range fresh.chains {
			tx.owned[c] = true
		}
	}
	return tx
}

// mutable returns chain name for modification, cloning it on first use.
func (tx *tableTx) mutable(name Chain) *fakeChain {
	c := tx.t.chains[name]
	if !tx.owned[name] {
		c = c.clone()
		tx.t.chains[name] = c
		tx.owned[name] = true
	}
	return c
}

// chain returns an existing chain or a "no such chain" failure.
func (tx *tableTx) chain(name string) (*fakeChain, *restoreFailure) {
	c := tx.t.chains[Chain(name)]
	if c == nil {
		return nil, failf(exitOtherProblem, "No chain/target/match by that name: chain %q in table %q", name, tx.t.name)
	}
	return c, nil
}

// validChainName applies the kernel's and iptables' rules for new chains.
func validChainName(name string) *restoreFailure {
	switch {
	case name == "":
		return failf(exitParameterProblem, "empty chain name")
	case len(name) > maxChainNameLen:
		return failf(exitParameterProblem, "chain name %q too long (must be under %d chars)", name, maxChainNameLen+1)
	case strings.HasPrefix(name, "-") || strings.HasPrefix(name, "!"):
		return failf(exitParameterProblem, "invalid chain name %q", name)
	case knownTargets[name] || targetLimits[name].table != "":
		return failf(exitParameterProblem, "chain name %q is a target name", name)
	}
	return nil
}

// newChain creates a user chain.
func (tx *tableTx) newChain(name string) *restoreFailure {
	if err := validChainName(name); err != nil {
		return err
	}
	if tx.t.chains[Chain(name)] != nil {
		return failf(exitOtherProblem, "Chain already exists: %q", name)
	}
	tx.t.chains[Chain(name)] = &fakeChain{name: Chain(name)}
	tx.owned[Chain(name)] = true
	return nil
}

// flushChain removes all rules of a chain, releasing their references.
func (tx *tableTx) flushChain(name Chain) {
	if len(tx.t.chains[name].rules) == 0 {
		return
	}
	c := tx.mutable(name)
	for _, r := range c.rules {
		tx.unref(r)
	}
	c.rules = nil
}

// deleteChain deletes an empty, unreferenced user chain, like the kernel.
func (tx *tableTx) deleteChain(name string) *restoreFailure {
	c, err := tx.chain(name)
	if err != nil {
		return err
	}
	switch {
	case c.builtin:
		return failf(exitOtherProblem, "cannot delete built-in chain %q", name)
	case len(c.rules) > 0:
		return failf(exitOtherProblem, "cannot delete chain %q: not empty (%d rules)", name, len(c.rules))
	case tx.t.refs[c.name] > 0:
		return failf(exitOtherProblem, "cannot delete chain %q: still referenced by %d rules", name, tx.t.refs[c.name])
	}
	delete(tx.t.chains, c.name)
	delete(tx.t.refs, c.name)
	delete(tx.owned, c.name)
	return nil
}

// unref releases the reference a removed rule held on its target chain.
func (tx *tableTx) unref(r fakeRule) {
	if r.jump {
		tx.t.refs[Chain(r.target)]--
	}
}

// parseRule canonicalises a rule specification and checks its target the
// way iptables (parse time) and the kernel (rule insertion) do.
func (tx *tableTx) parseRule(words []string) (fakeRule, *restoreFailure) {
	cr, err := canonicalizeRule(tx.family, words)
	if err != nil {
		return fakeRule{}, failf(exitParameterProblem, "%v", err)
	}
	r := fakeRule{spec: cr.spec, key: cr.key, target: cr.target}
	if tx.setExists != nil {
		for _, name := range matchedSets(words) {
			if !tx.setExists(tx.family, name) {
				return fakeRule{}, failf(exitParameterProblem, "Set %s doesn't exist.", name)
			}
		}
	}
	if r.target == "" {
		return r, nil
	}
	if c := tx.t.chains[Chain(r.target)]; c != nil {
		if c.builtin {
			return fakeRule{}, failf(exitParameterProblem, "cannot jump to built-in chain %q", r.target)
		}
		r.jump = true
		return r, nil
	}
	if _, ok := targetLimits[r.target]; ok {
		return r, nil // checked by noteMisplaced and validateGraph
	}
	if !knownTargets[r.target] {
		return fakeRule{}, failf(exitParameterProblem, "Chain '%s' does not exist (and is no known target)", r.target)
	}
	if r.target == "DROP" && tx.t.name == TableNAT {
		return fakeRule{}, failf(exitParameterProblem, "The \"nat\" table is not intended for filtering, the use of DROP is therefore inhibited.")
	}
	return r, nil
}

// insertRule puts r at index i (0-based) of chain.
func (tx *tableTx) insertRule(chain Chain, i int, r fakeRule) {
	if lim, ok := targetLimits[r.target]; ok && !r.jump && lim.table != tx.t.name &&
		tx.backend != BackendLegacy && tx.misplaced[chain] == nil {
		if tx.misplaced == nil {
			tx.misplaced = map[Chain]*restoreFailure{}
		}
		tx.misplaced[chain] = failf(exitResourceProblem, "target %s in chain %s is only valid in the %s table, not %s",
			r.target, chain, lim.table, tx.t.name)
	}
	c := tx.mutable(chain)
	c.rules = slices.Insert(c.rules, i, r)
	if r.jump {
		tx.t.refs[Chain(r.target)]++
	}
}

// removeRule deletes the rule at index i (0-based) of chain.
func (tx *tableTx) removeRule(chain Chain, i int) {
	c := tx.mutable(chain)
	tx.unref(c.rules[i])
	c.rules = slices.Delete(c.rules, i, i+1)
}

// findRule returns the index of the first rule equal to r, or -1.
func findRule(c *fakeChain, r fakeRule) int {
	for i, x := range c.rules {
		if x.key == r.key {
			return i
		}
	}
	return -1
}

// ruleNumber parses a 1-based rule number.
func ruleNumber(s string) (int, bool) {
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// declare handles ":CHAIN POLICY [pkts:bytes]". For a user chain it
// creates the chain or, if it exists, flushes it (the property kube-proxy
// relies on with --noflush); for a built-in chain it sets the policy and
// keeps the rules.
func (tx *tableTx) declare(line string) *restoreFailure {
	fields := strings.Fields(line[1:])
	if len(fields) < 2 || len(fields) > 3 {
		return failf(exitParameterProblem, "bad chain declaration %q", line)
	}
	name, policy := Chain(fields[0]), fields[1]
	if c := tx.t.chains[name]; c != nil && c.builtin {
		if policy != "ACCEPT" && policy != "DROP" {
			return failf(exitParameterProblem, "bad built-in chain policy %q", policy)
		}
		if c.policy != policy {
			tx.mutable(name).policy = policy
		}
		return nil
	}
	if policy != "-" {
		return failf(exitParameterProblem, "cannot set policy %q on user-defined chain %q", policy, name)
	}
	if tx.t.chains[name] != nil {
		tx.flushChain(name)
		return nil
	}
	return tx.newChain(string(name))
}

// commandAliases maps long command spellings to the short form.
var commandAliases = map[string]string{
	"--append": "-A", "--insert": "-I", "--delete": "-D", "--replace": "-R", "--new-chain": "-N",
	"--delete-chain": "-X", "--flush": "-F", "--policy": "-P", "--zero": "-Z",
}

// command applies one iptables command line of a restore payload.
func (tx *tableTx) command(words []string) *restoreFailure {
	if len(words) == 0 {
		return nil
	}
	cmd := words[0]
	if alias, ok := commandAliases[cmd]; ok {
		cmd = alias
	}
	for _, w := range words {
		if w == "-t" || w == "--table" {
			return failf(exitParameterProblem, "The -t option cannot be used in iptables-restore.")
		}
	}
	arg := func(i int) string {
		if i < len(words) {
			return words[i]
		}
		return ""
	}
	switch cmd {
	case "-A", "-I", "-R", "-D":
		c, err := tx.chain(arg(1))
		if err != nil {
			return err
		}
		if err := checkInterfaces(c, words[2:]); err != nil {
			return err
		}
		rest := words[min(2, len(words)):]
		num, hasNum := ruleNumber(arg(2))
		if hasNum {
			rest = rest[1:]
		}
		if cmd == "-D" && hasNum {
			if len(rest) > 0 {
				return failf(exitParameterProblem, "-D with a rule number takes no rule specification")
			}
			if num < 1 || num > len(c.rules) {
				return failf(exitOtherProblem, "Index of deletion too big: %d", num)
			}
			tx.removeRule(c.name, num-1)
			return nil
		}
		if hasNum && cmd == "-A" {
			return failf(exitParameterProblem, "Bad argument %q", arg(2))
		}
		r, err := tx.parseRule(rest)
		if err != nil {
			return err
		}
		switch cmd {
		case "-A":
			tx.insertRule(c.name, len(c.rules), r)
		case "-I":
			if !hasNum {
				num = 1
			}
			if num < 1 || num > len(c.rules)+1 {
				return failf(exitOtherProblem, "Index of insertion too big: %d", num)
			}
			tx.insertRule(c.name, num-1, r)
		case "-R":
			if !hasNum {
				return failf(exitParameterProblem, "-R requires a rule number")
			}
			if num < 1 || num > len(c.rules) {
				return failf(exitOtherProblem, "Index of replacement too big: %d", num)
			}
			tx.removeRule(c.name, num-1)
			tx.insertRule(c.name, num-1, r)
		case "-D":
			i := findRule(c, r)
			if i < 0 {
				return failf(exitOtherProblem, "Bad rule (does a matching rule exist in that chain?): %s", r.spec)
			}
			tx.removeRule(c.name, i)
		}
		return nil
	case "-N":
		return tx.newChain(arg(1))
	case "-X":
		if arg(1) != "" {
			return tx.deleteChain(arg(1))
		}
		for _, n := range tx.t.userChains() {
			if err := tx.deleteChain(string(n)); err != nil {
				return err
			}
		}
		return nil
	case "-F":
		if arg(1) != "" {
			c, err := tx.chain(arg(1))
			if err != nil {
				return err
			}
			tx.flushChain(c.name)
			delete(tx.misplaced, c.name)
			return nil
		}
		for n := range tx.t.chains {
			tx.flushChain(n)
		}
		return nil
	case "-P":
		c, err := tx.chain(arg(1))
		if err != nil {
			return err
		}
		if !c.builtin || (arg(2) != "ACCEPT" && arg(2) != "DROP") {
			return failf(exitParameterProblem, "bad policy %q for chain %q", arg(2), c.name)
		}
		tx.mutable(c.name).policy = arg(2)
		return nil
	case "-Z":
		if arg(1) != "" {
			if _, err := tx.chain(arg(1)); err != nil {
				return err
			}
		}
		return nil // counters are not modelled
	}
	return failf(exitParameterProblem, "Bad argument %q (command not supported)", words[0])
}

// applyRestore runs payload against fam the way iptables-restore does:
// line by line, committing each table block at its COMMIT line. It
// returns the 1-based failing line with the failure. Called with the
// Fake's lock held.
func applyRestore(ff *fakeFamily, env txEnv, payload []byte, opts RestoreOptions) (int, *restoreFailure) {
	var tx *tableTx
	lineNo := 0
	for rest := payload; len(rest) > 0; {
		var raw []byte
		raw, rest, _ = bytes.Cut(rest, []byte{'\n'})
		lineNo++
		line := strings.TrimSpace(string(raw))
		if line == "" || line[0] == '#' {
			continue
		}
		switch {
		case tx == nil:
			if line[0] != '*' {
				return lineNo, failf(exitParameterProblem, "Bad argument %q: no table selected (\"*table\" expected)", line)
			}
			name := Table(line[1:])
			if !knownTable(name) {
				return lineNo, failf(exitParameterProblem, "table name %q invalid", name)
			}
			tx = beginTx(env, ff.table(name), opts.Flush)
		case line == "COMMIT":
			if err := tx.validateGraph(); err != nil {
				return lineNo, err
			}
			if !opts.Test {
				tx.t.exists = true
				ff.tables[tx.t.name] = tx.t
			}
			tx = nil
		case line[0] == '*':
			return lineNo, failf(exitOtherProblem, "COMMIT expected before %q", line)
		case line[0] == ':':
			if err := tx.declare(line); err != nil {
				return lineNo, err
			}
		default:
			words, err := splitRestoreLine(line)
			if err != nil {
				return lineNo, failf(exitParameterProblem, "%v", err)
			}
			if err := tx.command(words); err != nil {
				return lineNo, err
			}
		}
	}
	if tx != nil {
		n := bytes.Count(payload, []byte{'\n'}) + 1
		return n, failf(exitOtherProblem, "COMMIT expected at line %d", n)
	}
	return 0, nil
}

// checkInterfaces applies iptables' own check that a rule in a built-in
// chain only matches interfaces that exist at that hook: no input
// interface after routing (OUTPUT, POSTROUTING), no output interface
// before it (PREROUTING, INPUT).
func checkInterfaces(c *fakeChain, words []string) *restoreFailure {
	if !c.builtin {
		return nil
	}
	for _, w := range words {
		switch {
		case (w == "-i" || w == "--in-interface") && (c.name == ChainOutput || c.name == ChainPostrouting):
			return failf(exitParameterProblem, "Can't use -i with %s", c.name)
		case (w == "-o" || w == "--out-interface") && (c.name == ChainPrerouting || c.name == ChainInput):
			return failf(exitParameterProblem, "Can't use -o with %s", c.name)
		}
	}
	return nil
}

// matchedSets returns the ipset names a rule matches with
// "-m set --match-set NAME FLAGS".
func matchedSets(words []string) []string {
	var names []string
	for i := 0; i+1 < len(words); i++ {
		if words[i] == "--match-set" {
			names = append(names, words[i+1])
		}
	}
	return names
}
