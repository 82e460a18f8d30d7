package iptablestest

import (
	"errors"
	"fmt"
	"strings"
)

// maxChainNameLen is the kernel's limit (XT_EXTENSION_MAXNAMELEN minus the
// NUL); iptables-restore refuses longer names, so renderer bugs show here.
const maxChainNameLen = 28

// parser holds the state of one ParseDump call.
type parser struct {
	d       *Dump
	cur     *Table
	pending []string // comment/blank lines outside tables
	line    int
	text    string
	toks    []token // reused by every rule line
}

func (p *parser) errorf(format string, args ...any) error {
	return &ParseError{Line: p.line, Text: p.text, Err: fmt.Errorf(format, args...)}
}

func (p *parser) wrap(err error) error {
	return &ParseError{Line: p.line, Text: p.text, Err: err}
}

func parseDump(text string) (*Dump, error) {
	p := &parser{d: &Dump{tables: map[string]*Table{}}}
	rest := text
	for len(rest) > 0 {
		var raw string
		if i := strings.IndexByte(rest, '\n'); i >= 0 {
			raw, rest = rest[:i], rest[i+1:]
		} else {
			raw, rest = rest, ""
		}
		p.line++
		raw = strings.TrimRight(raw, "\r")
		if err := p.parseLine(raw); err != nil {
			return nil, err
		}
	}
	if p.cur != nil {
		p.text = ""
		return nil, p.errorf("table %q has no COMMIT", p.cur.Name)
	}
	p.d.Trailer = p.pending
	return p.d, nil
}

func (p *parser) parseLine(raw string) error {
	line := strings.TrimSpace(raw)
	p.text = line
	switch {
	case line == "" || line[0] == '#':
		if p.cur == nil {
			p.pending = append(p.pending, raw)
		}
		return nil
	case line[0] == '*':
		return p.startTable(line[1:])
	case line == "COMMIT":
		return p.commit()
	}
	if p.cur == nil {
		return p.errorf("rule or declaration outside a table")
	}
	switch line[0] {
	case ':':
		return p.declare(line[1:])
	case '[', '-':
		return p.rule(line)
	}
	return p.errorf("unrecognised line")
}

func (p *parser) startTable(name string) error {
	if p.cur != nil {
		return p.errorf("table %q starts before table %q is committed", name, p.cur.Name)
	}
	if _, ok := builtinChains[name]; !ok {
		return p.errorf("unknown table %q", name)
	}
	if _, dup := p.d.tables[name]; dup {
		return p.errorf("table %q appears twice", name)
	}
	t := &Table{Name: name, Header: p.pending, chains: map[string]*Chain{}}
	p.pending = nil
	p.d.Tables = append(p.d.Tables, t)
	p.d.tables[name] = t
	p.cur = t
	return nil
}

func validChainName(name string) error {
	switch {
	case name == "":
		return errors.New("empty chain name")
	case len(name) > maxChainNameLen:
		return fmt.Errorf("chain name %q longer than %d characters", name, maxChainNameLen)
	case name[0] == '-' || name[0] == '!':
		return fmt.Errorf("invalid chain name %q", name)
	case targetSpecs[name] != nil:
		return fmt.Errorf("chain name %q is a target name", name)
	}
	return nil
}

func (p *parser) declare(decl string) error {
	f := strings.Fields(decl)
	if len(f) < 2 || len(f) > 3 {
		return p.errorf("want \":CHAIN POLICY [packets:bytes]\"")
	}
	name, policy := f[0], f[1]
	if err := validChainName(name); err != nil {
		return p.wrap(err)
	}
	var counters string
	if len(f) == 3 {
		counters = f[2]
		if !validCounters(counters) {
			return p.errorf("invalid counters %q", counters)
		}
	}
	t := p.cur
	if c, ok := t.chains[name]; ok && (c.Declared || len(c.Rules) > 0) {
		return p.errorf("chain %q declared twice or after its rules", name)
	}
	builtin := isBuiltinChain(t.Name, name)
	switch {
	case builtin && policy != "ACCEPT" && policy != "DROP":
		return p.errorf("built-in chain %s needs policy ACCEPT or DROP, not %q", name, policy)
	case !builtin && policy != "-":
		return p.errorf("user chain %s cannot have policy %q (want -)", name, policy)
	}
	c := &Chain{Name: name, Table: t.Name, Policy: policy, Counters: counters, Declared: true}
	t.chains[name] = c
	t.Chains = append(t.Chains, c)
	return nil
}

// validCounters checks "[packets:bytes]".
func validCounters(s string) bool {
	if len(s) < 5 || s[0] != '[' || s[len(s)-1] != ']' {
		return false
	}
	a, b, ok := strings.Cut(s[1:len(s)-1], ":")
	return ok && isDigits(a) && isDigits(b)
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (p *parser) rule(line string) error {
	var counters string
	if line[0] == '[' {
		end := strings.IndexByte(line, ']')
		if end < 0 || !validCounters(line[:end+1]) {
			return p.errorf("invalid counters prefix")
		}
		counters = line[:end+1]
		line = strings.TrimLeft(line[end+1:], " \t")
	}
	toks, err := tokenizeInto(line, p.toks)
	if err != nil {
		return p.wrap(err)
	}
	p.toks = toks
	if len(toks) < 2 {
		return p.errorf("want \"-A CHAIN ...\"")
	}
	if cmd := toks[0].text; cmd != "-A" && cmd != "--append" {
		return p.errorf("unsupported command %s (a dump only holds -A rules)", cmd)
	}
	t := p.cur
	name := toks[1].text
	c := t.chains[name]
	if c == nil {
		if !isBuiltinChain(t.Name, name) {
			return p.errorf("chain %q is not declared in table %s", name, t.Name)
		}
		c = &Chain{Name: name, Table: t.Name, Policy: "ACCEPT"}
		t.chains[name] = c
		t.Chains = append(t.Chains, c)
	}
	r := &Rule{Table: t.Name, Chain: name, Num: len(c.Rules) + 1, Line: p.line, Counters: counters, Text: line}
	if err := parseRuleArgs(r, toks[2:]); err != nil {
		return p.wrap(err)
	}
	if err := compileRule(r, &p.d.family); err != nil {
		return p.wrap(err)
	}
	c.Rules = append(c.Rules, r)
	return nil
}

// commit ends the current table and resolves jumps, which may name chains
// declared after the rule.
func (p *parser) commit() error {
	t := p.cur
	if t == nil {
		return p.errorf("COMMIT outside a table")
	}
	for _, c := range t.Chains {
		for _, r := range c.Rules {
			if r.Target == "" || targetSpecs[r.Target] != nil {
				continue
			}
			dst := t.chains[r.Target]
			if dst == nil {
				err := fmt.Errorf("%w: %q is neither a chain of table %s nor a supported target", ErrNoChain, r.Target, t.Name)
				r.target = failTarget{err: err}
				r.deferred = append(r.deferred, err)
				continue
			}
			perr := func(format string, args ...any) error {
				return &ParseError{Line: r.Line, Text: r.Text, Err: fmt.Errorf(format, args...)}
			}
			if dst.BuiltIn() {
				return perr("cannot jump to built-in chain %s", dst.Name)
			}
			if len(r.TargetOptions) > 0 {
				return perr("jump to chain %s takes no options", dst.Name)
			}
			r.target = jumpTarget{chain: dst, isGoto: r.Goto}
		}
	}
	p.cur = nil
	return nil
}
