package iptablestest

import (
	"errors"
	"fmt"
)

// Validate reports, eagerly, what Trace would only report when a packet
// reaches it: unknown match modules, options and targets, jumps to chains
// that do not exist, and jump loops (which the kernel refuses to load).
// Renderer tests can call it to check that a whole ruleset is loadable and
// fully understood by the tracer. The result joins one error per problem.
func (d *Dump) Validate() error {
	var errs []error
	for _, t := range d.Tables {
		for _, c := range t.Chains {
			for _, r := range c.Rules {
				for _, err := range r.deferred {
					errs = append(errs, &TraceError{Table: t.Name, Chain: c.Name, Rule: r, Err: err})
				}
			}
		}
		errs = append(errs, loops(t)...)
	}
	return errors.Join(errs...)
}

// loops finds jump/goto cycles in a table by depth-first search.
func loops(t *Table) []error {
	const (
		unvisited = iota
		visiting
		done
	)
	state := map[*Chain]int{}
	var errs []error
	var visit func(c *Chain, path []string)
	visit = func(c *Chain, path []string) {
		state[c] = visiting
		path = append(path, c.Name)
		for _, r := range c.Rules {
			j, ok := r.target.(jumpTarget)
			if !ok {
				continue
			}
			switch state[j.chain] {
			case visiting:
				errs = append(errs, &TraceError{Table: t.Name, Chain: c.Name, Rule: r,
					Err: fmt.Errorf("%w: %v -> %s", ErrLoop, path, j.chain.Name)})
			case unvisited:
				visit(j.chain, path)
			}
		}
		state[c] = done
	}
	for _, c := range t.Chains {
		if state[c] == unvisited {
			visit(c, nil)
		}
	}
	return errs
}
