package iptablestest

import (
	"fmt"
	"slices"
	"strings"
)

// ruleCompiler turns a parsed Rule into matchers and a target, validating
// the values of everything the tracer evaluates and tracking the address
// family of the dump.
type ruleCompiler struct {
	r        *Rule
	family   *int
	proto    uint8
	hasProto bool
	protoNeg bool
}

// add appends a matcher to the rule.
func (c *ruleCompiler) add(m matcher) { c.r.matchers = append(c.r.matchers, m) }

// fail records a part of the rule the tracer cannot evaluate; the error is
// raised when a packet reaches that part of the rule.
func (c *ruleCompiler) fail(err error) {
	c.r.deferred = append(c.r.deferred, err)
	c.add(failMatcher{err: err})
}

// noteFamily checks that an address agrees with the family of the dump.
func (c *ruleCompiler) noteFamily(f int) error {
	if *c.family == familyUnknown {
		*c.family = f
		return nil
	}
	if *c.family != f {
		return fmt.Errorf("%s address in a dump of %s rules", familyName(f), familyName(*c.family))
	}
	return nil
}

func (c *ruleCompiler) ipMask(s string) (ipMask, error) {
	m, err := parseIPMask(s)
	if err != nil {
		return m, err
	}
	return m, c.noteFamily(m.family())
}

// compileRule compiles r; jumps to chains are resolved at COMMIT.
func compileRule(r *Rule, family *int) error {
	c := &ruleCompiler{r: r, family: family}
	for _, o := range r.Base {
		if err := c.base(o); err != nil {
			return fmt.Errorf("%s: %w", o.Name, err)
		}
	}
	for i := range r.Matches {
		m := &r.Matches[i]
		spec := matchSpecs[m.Module]
		if spec == nil {
			c.fail(unsupportedf("match module %q", m.Module))
			continue
		}
		if len(spec.protos) > 0 && (!c.hasProto || c.protoNeg || !slices.Contains(spec.protos, c.proto)) {
			names := make([]string, len(spec.protos))
			for k, p := range spec.protos {
				names[k] = protoName(p)
			}
			return fmt.Errorf("match %q requires -p %s", m.Module, strings.Join(names, "|"))
		}
		if err := spec.compile(c, m); err != nil {
			return fmt.Errorf("-m %s: %w", m.Module, err)
		}
	}
	if r.Target == "" {
		return nil
	}
	spec := targetSpecs[r.Target]
	if spec == nil {
		return nil
	}
	if r.Goto {
		return fmt.Errorf("-g needs a chain, not target %s", r.Target)
	}
	t, err := spec.compile(c, r.TargetOptions)
	if err != nil {
		return fmt.Errorf("-j %s: %w", r.Target, err)
	}
	r.target = t
	return nil
}

func (c *ruleCompiler) base(o Option) error {
	switch o.Name {
	case "-p":
		n, err := parseProto(strings.ToLower(o.Values[0]))
		if err != nil {
			c.fail(err)
			return nil
		}
		c.proto, c.hasProto, c.protoNeg = n, true, o.Negated
		if n == 0 {
			if o.Negated {
				c.add(constMatcher(no))
			}
			return nil
		}
		c.add(negate(protoMatcher(n), o.Negated))
	case "-s", "-d":
		if strings.Contains(o.Values[0], ",") {
			return fmt.Errorf("address lists are not supported (iptables-save never prints them)")
		}
		m, err := c.ipMask(o.Values[0])
		if err != nil {
			return err
		}
		c.add(negate(addrMatcher{m: m, src: o.Name == "-s"}, o.Negated))
	case "-i", "-o":
		name := o.Values[0]
		if len(name) > maxIfaceLen || name == "" {
			return fmt.Errorf("invalid interface name %q", name)
		}
		c.add(negate(ifaceMatcher{name: wildcardIface(name), out: o.Name == "-o"}, o.Negated))
	case "-f":
		c.add(negate(fragMatcher{}, o.Negated))
	case "-c":
		// Counters only; nothing to match.
	}
	return nil
}
