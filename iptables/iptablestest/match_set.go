package iptablestest

import (
	"errors"
	"fmt"
	"strings"
)

// setMatcher is -m set --match-set NAME FLAGS.
type setMatcher struct {
	name          string
	src           []bool
	flags         string
	returnNomatch bool
}

func (m setMatcher) eval(c *evalCtx) (tri, error) {
	cs, err := c.t.set(m.name)
	if err != nil {
		return no, err
	}
	return cs.test(c, m.src, m.returnNomatch)
}

func (m setMatcher) assume(_ *evalCtx, matched bool) assumption {
	return assumption{note: fmt.Sprintf("source port %s ipset %s (%s)", verb(matched, "in", "not in"), m.name, m.flags)}
}

// maxSetDims is the kernel's IPSET_DIM_MAX.
const maxSetDims = 6

func compileSet(c *ruleCompiler, m *Match) error {
	var sm *setMatcher
	neg := false
	for _, o := range m.Options {
		switch o.Name {
		case "--match-set":
			if sm != nil {
				return errors.New("--match-set given more than once")
			}
			sm = &setMatcher{name: o.Values[0], flags: o.Values[1]}
			neg = o.Negated
			dirs := strings.Split(o.Values[1], ",")
			if len(dirs) > maxSetDims {
				return fmt.Errorf("too many dimensions in %q", o.Values[1])
			}
			for _, d := range dirs {
				switch d {
				case "src":
					sm.src = append(sm.src, true)
				case "dst":
					sm.src = append(sm.src, false)
				default:
					return fmt.Errorf("invalid flag %q in %q (want src or dst)", d, o.Values[1])
				}
			}
		case "--return-nomatch":
			if sm == nil {
				return errors.New("--return-nomatch before --match-set")
			}
			sm.returnNomatch = true
		case "--update-counters", "--update-subcounters":
			// Counters do not change matching.
		default:
			c.fail(unsupportedf("option %s of match set", o.Name))
		}
	}
	if sm == nil {
		return errors.New("--match-set is required")
	}
	c.add(negate(*sm, neg))
	return nil
}
