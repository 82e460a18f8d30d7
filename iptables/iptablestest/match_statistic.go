package iptablestest

import (
	"errors"
	"fmt"
	"strconv"
)

// statisticMatcher is -m statistic. It is random from the tracer's point
// of view, so both outcomes are explored with their probabilities:
// --mode random matches with --probability, --mode nth matches one packet
// in --every.
type statisticMatcher struct {
	prob float64
	spec string
}

func (m statisticMatcher) eval(*evalCtx) (tri, error) {
	switch {
	case m.prob >= 1:
		return yes, nil
	case m.prob <= 0:
		return no, nil
	}
	return maybe, nil
}

func (m statisticMatcher) assume(_ *evalCtx, matched bool) assumption {
	p := m.prob
	if !matched {
		p = 1 - p
	}
	return assumption{note: fmt.Sprintf("statistic %s %s", m.spec, verb(matched, "matched", "did not match")), random: true, prob: p}
}

func compileStatistic(c *ruleCompiler, m *Match) error {
	opts := map[string]Option{}
	for _, o := range m.Options {
		if _, dup := opts[o.Name]; dup {
			return fmt.Errorf("%s given more than once", o.Name)
		}
		opts[o.Name] = o
	}
	mode, ok := opts["--mode"]
	if !ok {
		return errors.New("--mode is required")
	}
	if mode.Negated {
		return errors.New("--mode cannot be negated")
	}
	var sm statisticMatcher
	var neg bool
	switch mode.Values[0] {
	case "random":
		po, ok := opts["--probability"]
		if !ok || len(opts) != 2 {
			return errors.New("--mode random needs --probability and nothing else")
		}
		p, err := strconv.ParseFloat(po.Values[0], 64)
		if err != nil || p < 0 || p > 1 {
			return fmt.Errorf("invalid probability %q", po.Values[0])
		}
		sm = statisticMatcher{prob: p, spec: "random p=" + po.Values[0]}
		neg = po.Negated
	case "nth":
		eo, ok := opts["--every"]
		if !ok {
			return errors.New("--mode nth needs --every")
		}
		every, err := strconv.ParseUint(eo.Values[0], 10, 32)
		if err != nil || every == 0 {
			return fmt.Errorf("invalid --every %q", eo.Values[0])
		}
		if po, ok := opts["--packet"]; ok {
			n, err := strconv.ParseUint(po.Values[0], 10, 32)
			if err != nil || n >= every {
				return fmt.Errorf("invalid --packet %q (must be below --every)", po.Values[0])
			}
		}
		if _, ok := opts["--probability"]; ok {
			return errors.New("--probability is not valid with --mode nth")
		}
		sm = statisticMatcher{prob: 1 / float64(every), spec: "nth every " + eo.Values[0]}
		neg = eo.Negated
	default:
		return fmt.Errorf("unknown mode %q", mode.Values[0])
	}
	c.add(negate(sm, neg))
	return nil
}
