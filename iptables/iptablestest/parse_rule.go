package iptablestest

import (
	"errors"
	"fmt"
	"strings"
)

// baseOptions maps every spelling of the protocol-independent options to
// the short form iptables-save prints, with their argument count.
var baseOptions = map[string]struct {
	canon string
	args  int
}{
	"-s": {"-s", 1}, "--source": {"-s", 1}, "--src": {"-s", 1},
	"-d": {"-d", 1}, "--destination": {"-d", 1}, "--dst": {"-d", 1},
	"-p": {"-p", 1}, "--protocol": {"-p", 1},
	"-i": {"-i", 1}, "--in-interface": {"-i", 1},
	"-o": {"-o", 1}, "--out-interface": {"-o", 1},
	"-f": {"-f", 0}, "--fragment": {"-f", 0},
	"-c": {"-c", 2}, "--set-counters": {"-c", 2},
}

// ruleArgParser turns the tokens after "-A CHAIN" into the generic form of
// a Rule. Options are attributed to their owner the way iptables does:
// after -j to the target, otherwise to the most recent match module that
// knows them, falling back to the match that -p loads implicitly.
type ruleArgParser struct {
	r        *Rule
	toks     []token
	i        int
	neg      bool
	inTarget bool
	proto    string
	// vals backs the Values of every option of the rule: one allocation
	// per rule instead of one per option.
	vals []string
}

func parseRuleArgs(r *Rule, toks []token) error {
	p := &ruleArgParser{r: r, toks: toks, vals: make([]string, 0, len(toks))}
	for p.i < len(p.toks) {
		t := p.toks[p.i]
		if !t.quoted && t.text == "!" {
			if p.neg {
				return errors.New("multiple consecutive \"!\"")
			}
			p.neg = true
			p.i++
			continue
		}
		if t.quoted || len(t.text) < 2 || t.text[0] != '-' {
			return fmt.Errorf("unexpected argument %q", t.text)
		}
		p.i++
		if err := p.option(t.text); err != nil {
			return err
		}
	}
	if p.neg {
		return errors.New("\"!\" at the end of the rule")
	}
	return nil
}

func (p *ruleArgParser) option(name string) error {
	switch name {
	case "-m", "--match":
		if p.neg {
			return errors.New("\"!\" cannot negate -m")
		}
		v, err := p.take(name, 1)
		if err != nil {
			return err
		}
		p.r.Matches = append(p.r.Matches, Match{Module: v[0]})
		p.inTarget = false
		return nil
	case "-j", "--jump", "-g", "--goto":
		if p.neg {
			return fmt.Errorf("\"!\" cannot negate %s", name)
		}
		if p.r.Target != "" {
			return errors.New("multiple targets")
		}
		v, err := p.take(name, 1)
		if err != nil {
			return err
		}
		p.r.Target = v[0]
		p.r.Goto = name == "-g" || name == "--goto"
		p.inTarget = true
		return nil
	}
	if b, ok := baseOptions[name]; ok {
		for _, o := range p.r.Base {
			if o.Name == b.canon {
				return fmt.Errorf("option %s given more than once", b.canon)
			}
		}
		v, err := p.take(name, b.args)
		if err != nil {
			return err
		}
		if b.canon == "-p" {
			p.proto = strings.ToLower(v[0])
		}
		p.r.Base = append(p.r.Base, Option{Name: b.canon, Negated: p.consumeNeg(), Values: v})
		return nil
	}
	if !strings.HasPrefix(name, "--") {
		return fmt.Errorf("unknown option %s", name)
	}
	if p.inTarget {
		return p.targetOption(name)
	}
	return p.matchOption(name)
}

func (p *ruleArgParser) targetOption(name string) error {
	spec := targetSpecs[p.r.Target]
	var v []string
	var err error
	if spec == nil {
		v = p.takeGreedy()
	} else {
		n, ok := spec.opts[canonical(spec.aliases, name)]
		if !ok {
			return fmt.Errorf("unknown option %s for target %s", name, p.r.Target)
		}
		name = canonical(spec.aliases, name)
		if v, err = p.take(name, n); err != nil {
			return err
		}
	}
	p.r.TargetOptions = append(p.r.TargetOptions, Option{Name: name, Negated: p.consumeNeg(), Values: v})
	return nil
}

func (p *ruleArgParser) matchOption(name string) error {
	owner, n := -1, 0
	if last := len(p.r.Matches) - 1; last >= 0 {
		spec := matchSpecs[p.r.Matches[last].Module]
		if spec == nil {
			owner, n = last, -1
		} else if k, ok := spec.arity(name); ok {
			owner, n = last, k
		}
	}
	for k := len(p.r.Matches) - 2; owner < 0 && k >= 0; k-- {
		if spec := matchSpecs[p.r.Matches[k].Module]; spec != nil {
			if a, ok := spec.arity(name); ok {
				owner, n = k, a
			}
		}
	}
	if owner < 0 {
		owner, n = p.implicitOwner(name)
	}
	if owner < 0 {
		return fmt.Errorf("unknown option %s (no loaded match knows it)", name)
	}
	m := &p.r.Matches[owner]
	var v []string
	if n < 0 {
		v = p.takeGreedy()
	} else {
		name = canonical(matchSpecs[m.Module].aliases, name)
		var err error
		if v, err = p.take(name, n); err != nil {
			return err
		}
	}
	m.Options = append(m.Options, Option{Name: name, Negated: p.consumeNeg(), Values: v})
	return nil
}

// implicitOwner finds or creates the match that "-p PROTO" loads.
func (p *ruleArgParser) implicitOwner(name string) (int, int) {
	if p.proto == "" {
		return -1, 0
	}
	num, err := parseProto(p.proto)
	if err != nil {
		return -1, 0
	}
	mod := implicitModule(num)
	spec := matchSpecs[mod]
	if spec == nil {
		return -1, 0
	}
	n, ok := spec.arity(name)
	if !ok {
		return -1, 0
	}
	for k, m := range p.r.Matches {
		if m.Implicit && m.Module == mod {
			return k, n
		}
	}
	p.r.Matches = append(p.r.Matches, Match{Module: mod, Implicit: true})
	return len(p.r.Matches) - 1, n
}

// take reads exactly n arguments. An unquoted "!" right after the option
// is the deprecated intrapositioned negation ("--dport ! 80").
func (p *ruleArgParser) take(name string, n int) ([]string, error) {
	if n > 0 && p.i < len(p.toks) && !p.toks[p.i].quoted && p.toks[p.i].text == "!" {
		if p.neg {
			return nil, errors.New("multiple \"!\"")
		}
		p.neg = true
		p.i++
	}
	if p.i+n > len(p.toks) {
		return nil, fmt.Errorf("option %s needs %d argument(s)", name, n)
	}
	if n == 0 {
		return nil, nil
	}
	start := len(p.vals)
	for k := 0; k < n; k++ {
		p.vals = append(p.vals, p.toks[p.i+k].text)
	}
	p.i += n
	return p.vals[start:len(p.vals):len(p.vals)], nil
}

// takeGreedy reads the arguments of an option of an unknown module or
// target: every following token that does not look like an option.
func (p *ruleArgParser) takeGreedy() []string {
	start := len(p.vals)
	for p.i < len(p.toks) {
		t := p.toks[p.i]
		if !t.quoted && (t.text == "!" || (len(t.text) > 1 && t.text[0] == '-')) {
			break
		}
		p.vals = append(p.vals, t.text)
		p.i++
	}
	if len(p.vals) == start {
		return nil
	}
	return p.vals[start:len(p.vals):len(p.vals)]
}

func (p *ruleArgParser) consumeNeg() bool {
	n := p.neg
	p.neg = false
	return n
}
