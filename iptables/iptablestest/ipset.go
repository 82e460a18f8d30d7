package iptablestest

import (
	"errors"
	"fmt"
	"strings"
)

// Set is the content of one ipset, as `ipset save` / `ipset list` show it,
// for tracing rules that dispatch through -m set.
type Set struct {
	// Type is the set type: hash:ip, hash:net, hash:ip,port,
	// hash:ip,port,ip, hash:ip,port,net, hash:net,port or bitmap:port.
	Type string
	// Family is "inet" (the default when empty) or "inet6".
	Family string
	// Entries are elements as ipset prints them, e.g. "10.0.0.1,tcp:80",
	// optionally followed by element options ("nomatch", "timeout 30");
	// only nomatch changes matching.
	Entries []string
}

// ParseIPSetSave parses `ipset save` output ("create NAME TYPE [family
// inet6] ..." and "add NAME ELEMENT [options]" lines) into sets keyed by
// name, failing with a *ParseError for lines it does not understand.
func ParseIPSetSave(text string) (map[string]Set, error) {
	sets := map[string]Set{}
	for i, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || line[0] == '#' {
			continue
		}
		perr := func(err error) error { return &ParseError{Line: i + 1, Text: line, Err: err} }
		cmd, rest, _ := strings.Cut(line, " ")
		name, rest, _ := strings.Cut(strings.TrimSpace(rest), " ")
		rest = strings.TrimSpace(rest)
		if name == "" {
			return nil, perr(errors.New("missing set name"))
		}
		switch cmd {
		case "create", "-N":
			if _, dup := sets[name]; dup {
				return nil, perr(fmt.Errorf("set %q created twice", name))
			}
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				return nil, perr(errors.New("missing set type"))
			}
			s := Set{Type: fields[0]}
			if _, ok := setTypes[s.Type]; !ok {
				return nil, perr(unsupportedf("set type %q", s.Type))
			}
			for k := 1; k+1 < len(fields); k++ {
				if fields[k] == "family" {
					s.Family = fields[k+1]
				}
			}
			sets[name] = s
		case "add", "-A":
			s, ok := sets[name]
			if !ok {
				return nil, perr(fmt.Errorf("add to set %q before it is created", name))
			}
			if rest == "" {
				return nil, perr(errors.New("missing element"))
			}
			s.Entries = append(s.Entries, rest)
			sets[name] = s
		default:
			return nil, perr(fmt.Errorf("unknown command %q", cmd))
		}
	}
	for name, s := range sets {
		if _, err := indexSet(name, s); err != nil {
			return nil, err
		}
	}
	return sets, nil
}
