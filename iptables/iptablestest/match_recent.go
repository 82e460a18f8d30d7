package iptablestest

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
)

// recentKey identifies an entry of a -m recent list.
type recentKey struct {
	name string
	addr netip.Addr
}

// recentMatcher is -m recent. --set always matches and records the
// address. --rcheck, --update and --remove depend on whether the list
// holds the address: known after a --set earlier in the trace or from
// TraceOptions.Recent, otherwise both outcomes are explored and the choice
// is remembered so later checks in the same trace agree with it.
type recentMatcher struct {
	name     string
	cmd      string
	rdest    bool
	mask     ipMask
	hasMask  bool
	hitcount bool
}

func (m recentMatcher) key(c *evalCtx) recentKey {
	a := c.b.pkt.src
	if m.rdest {
		a = c.b.pkt.dst
	}
	if m.hasMask {
		a = m.mask.apply(a)
	}
	return recentKey{name: m.name, addr: a}
}

// lookup returns whether the list holds k and whether that is known.
func (m recentMatcher) lookup(c *evalCtx, k recentKey) (present, known bool) {
	if v, ok := c.b.recent[k]; ok {
		return v, true
	}
	if c.t.opts.Recent == nil {
		return false, false
	}
	for _, a := range c.t.opts.Recent[m.name] {
		if m.hasMask {
			a = m.mask.apply(a)
		}
		if a == k.addr {
			return true, true
		}
	}
	return false, true
}

func (m recentMatcher) setEntry(c *evalCtx, k recentKey, present bool) {
	if c.b.recent == nil {
		c.b.recent = map[recentKey]bool{}
	}
	c.b.recent[k] = present
}

func (m recentMatcher) eval(c *evalCtx) (tri, error) {
	k := m.key(c)
	if m.cmd == "--set" {
		m.setEntry(c, k, true)
		return yes, nil
	}
	present, known := m.lookup(c, k)
	switch {
	case !known:
		return maybe, nil
	case !present:
		return no, nil
	case m.hitcount:
		return maybe, nil
	}
	if m.cmd == "--remove" {
		m.setEntry(c, k, false)
	}
	return yes, nil
}

func (m recentMatcher) assume(c *evalCtx, matched bool) assumption {
	k := m.key(c)
	note := fmt.Sprintf("recent list %s %s %s", m.name, verb(matched, "holds", "does not hold"), k.addr)
	if m.hitcount {
		note = fmt.Sprintf("recent list %s hit count for %s %s", m.name, k.addr, verb(matched, "reached", "not reached"))
	}
	switch {
	case matched && m.cmd == "--remove":
		m.setEntry(c, k, false)
	case matched:
		m.setEntry(c, k, true)
	case !m.hitcount:
		m.setEntry(c, k, false)
	}
	return assumption{note: note}
}

func compileRecent(c *ruleCompiler, m *Match) error {
	rm := recentMatcher{name: "DEFAULT"}
	neg := false
	seconds, reap := false, false
	for _, o := range m.Options {
		switch o.Name {
		case "--set", "--rcheck", "--update", "--remove":
			if rm.cmd != "" {
				return errors.New("only one of --set, --rcheck, --update, --remove is allowed")
			}
			rm.cmd, neg = o.Name, o.Negated
			continue
		}
		if o.Negated {
			return fmt.Errorf("%s cannot be negated", o.Name)
		}
		switch o.Name {
		case "--name":
			rm.name = o.Values[0]
		case "--rsource":
			rm.rdest = false
		case "--rdest":
			rm.rdest = true
		case "--mask":
			mk, err := c.ipMask(o.Values[0] + "/" + o.Values[0])
			if err != nil {
				return fmt.Errorf("--mask: %w", err)
			}
			rm.mask, rm.hasMask = mk, true
		case "--seconds", "--hitcount":
			if _, err := strconv.ParseUint(o.Values[0], 10, 32); err != nil {
				return fmt.Errorf("%s: invalid number %q", o.Name, o.Values[0])
			}
			seconds = seconds || o.Name == "--seconds"
			rm.hitcount = rm.hitcount || o.Name == "--hitcount"
		case "--reap":
			reap = true
		case "--rttl":
		}
	}
	if rm.cmd == "" {
		return errors.New("one of --set, --rcheck, --update, --remove is required")
	}
	if reap && !seconds {
		return errors.New("--reap needs --seconds")
	}
	if (seconds || rm.hitcount) && (rm.cmd == "--set" || rm.cmd == "--remove") {
		return fmt.Errorf("--seconds and --hitcount are only valid with --rcheck or --update")
	}
	c.add(negate(rm, neg))
	return nil
}
