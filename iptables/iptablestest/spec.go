package iptablestest

import (
	"strconv"
)

// moduleSpec describes a match module the parser knows: how many arguments
// each option takes (so values starting with "-" are not mistaken for
// options), its alternative spellings, which protocols the kernel requires
// the rule to select, and how to compile it into matchers.
type moduleSpec struct {
	opts    map[string]int
	aliases map[string]string
	protos  []uint8
	compile func(c *ruleCompiler, m *Match) error
}

// targetSpec is the moduleSpec counterpart for targets.
type targetSpec struct {
	opts    map[string]int
	aliases map[string]string
	compile func(c *ruleCompiler, opts []Option) (target, error)
}

// canonical maps an alias to its canonical option name.
func canonical(aliases map[string]string, name string) string {
	if c, ok := aliases[name]; ok {
		return c
	}
	return name
}

// arity returns the number of arguments of an option of a known module.
func (s *moduleSpec) arity(name string) (int, bool) {
	n, ok := s.opts[canonical(s.aliases, name)]
	return n, ok
}

// Protocol numbers by the names iptables accepts for -p.
var protoNumbers = map[string]uint8{
	"icmp": 1, "igmp": 2, "ipip": 4, "tcp": 6, "udp": 17, "dccp": 33, "gre": 47,
	"esp": 50, "ah": 51, "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132, "mh": 135,
	"udplite": 136,
}

// parseProto returns the protocol number of a -p argument; 0 means "all".
func parseProto(s string) (uint8, error) {
	if s == "all" {
		return 0, nil
	}
	if n, ok := protoNumbers[s]; ok {
		return n, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return 0, unsupportedf("protocol %q", s)
	}
	return uint8(n), nil
}

// implicitModule returns the match module that "-p NAME" loads implicitly.
func implicitModule(proto uint8) string {
	switch proto {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 132:
		return "sctp"
	case 1:
		return "icmp"
	case 58:
		return "icmp6"
	}
	return ""
}

func protoName(n uint8) string {
	for name, v := range protoNumbers {
		if v == n && name != "ipv6-icmp" {
			return name
		}
	}
	return strconv.Itoa(int(n))
}

// matchSpecs lists the match modules the tracer evaluates. Anything else
// is parsed generically and fails when a packet reaches it.
var matchSpecs = map[string]*moduleSpec{
	"comment": {opts: map[string]int{"--comment": 1}, compile: compileComment},
	"tcp": {
		opts:    map[string]int{"--dport": 1, "--sport": 1, "--tcp-flags": 2, "--syn": 0, "--tcp-option": 1},
		aliases: map[string]string{"--destination-port": "--dport", "--source-port": "--sport"},
		protos:  []uint8{6},
		compile: compilePorts,
	},
	"udp": {
		opts:    map[string]int{"--dport": 1, "--sport": 1},
		aliases: map[string]string{"--destination-port": "--dport", "--source-port": "--sport"},
		protos:  []uint8{17},
		compile: compilePorts,
	},
	"sctp": {
		opts:    map[string]int{"--dport": 1, "--sport": 1, "--chunk-types": 2},
		aliases: map[string]string{"--destination-port": "--dport", "--source-port": "--sport"},
		protos:  []uint8{132},
		compile: compilePorts,
	},
	"multiport": {
		opts: map[string]int{"--dports": 1, "--sports": 1, "--ports": 1},
		aliases: map[string]string{
			"--destination-ports": "--dports", "--source-ports": "--sports",
		},
		protos:  []uint8{6, 17, 132, 33, 136},
		compile: compileMultiport,
	},
	"icmp":      {opts: map[string]int{"--icmp-type": 1}, protos: []uint8{1}, compile: compileICMP},
	"icmp6":     {opts: map[string]int{"--icmpv6-type": 1}, protos: []uint8{58}, compile: compileICMP},
	"addrtype":  {opts: map[string]int{"--src-type": 1, "--dst-type": 1, "--limit-iface-in": 0, "--limit-iface-out": 0}, compile: compileAddrtype},
	"mark":      {opts: map[string]int{"--mark": 1}, compile: compileMark},
	"connmark":  {opts: map[string]int{"--mark": 1}, compile: compileMark},
	"state":     {opts: map[string]int{"--state": 1}, compile: compileConntrack},
	"statistic": {opts: map[string]int{"--mode": 1, "--probability": 1, "--every": 1, "--packet": 1}, compile: compileStatistic},
	"conntrack": {
		opts: map[string]int{
			"--ctstate": 1, "--ctstatus": 1, "--ctproto": 1, "--ctorigsrc": 1, "--ctorigdst": 1,
			"--ctreplsrc": 1, "--ctrepldst": 1, "--ctorigsrcport": 1, "--ctorigdstport": 1,
			"--ctreplsrcport": 1, "--ctrepldstport": 1, "--ctexpire": 1, "--ctdir": 1,
		},
		compile: compileConntrack,
	},
	"recent": {
		opts: map[string]int{
			"--name": 1, "--set": 0, "--rcheck": 0, "--update": 0, "--remove": 0, "--seconds": 1,
			"--reap": 0, "--hitcount": 1, "--rttl": 0, "--mask": 1, "--rsource": 0, "--rdest": 0,
		},
		compile: compileRecent,
	},
	"set": {
		opts: map[string]int{
			"--match-set": 2, "--return-nomatch": 0, "--update-counters": 0, "--update-subcounters": 0,
			"--packets-eq": 1, "--packets-lt": 1, "--packets-gt": 1, "--bytes-eq": 1, "--bytes-lt": 1, "--bytes-gt": 1,
		},
		aliases: map[string]string{"--set": "--match-set"},
		compile: compileSet,
	},
	"physdev": {
		opts: map[string]int{
			"--physdev-in": 1, "--physdev-out": 1, "--physdev-is-in": 0, "--physdev-is-out": 0, "--physdev-is-bridged": 0,
		},
		compile: compilePhysdev,
	},
}

// targetSpecs lists the targets the tracer evaluates. Other names are
// resolved to chains of the table when the table is committed.
var targetSpecs = map[string]*targetSpec{
	"ACCEPT":     {compile: compileVerdictTarget},
	"DROP":       {compile: compileVerdictTarget},
	"RETURN":     {compile: compileVerdictTarget},
	"REJECT":     {opts: map[string]int{"--reject-with": 1}, compile: compileReject},
	"DNAT":       {opts: map[string]int{"--to-destination": 1, "--random": 0, "--persistent": 0}, aliases: map[string]string{"--to": "--to-destination"}, compile: compileNAT},
	"SNAT":       {opts: map[string]int{"--to-source": 1, "--random": 0, "--random-fully": 0, "--persistent": 0}, aliases: map[string]string{"--to": "--to-source"}, compile: compileNAT},
	"MASQUERADE": {opts: map[string]int{"--to-ports": 1, "--random": 0, "--random-fully": 0}, compile: compileNAT},
	"MARK": {
		opts:    map[string]int{"--set-xmark": 1, "--set-mark": 1, "--and-mark": 1, "--or-mark": 1, "--xor-mark": 1},
		compile: compileMarkTarget,
	},
	"CONNMARK": {
		opts: map[string]int{
			"--set-xmark": 1, "--set-mark": 1, "--and-mark": 1, "--or-mark": 1, "--xor-mark": 1,
			"--save-mark": 0, "--restore-mark": 0, "--nfmask": 1, "--ctmask": 1, "--mask": 1,
		},
		compile: compileConnmarkTarget,
	},
	"LOG": {
		opts: map[string]int{
			"--log-level": 1, "--log-prefix": 1, "--log-tcp-sequence": 0, "--log-tcp-options": 0,
			"--log-ip-options": 0, "--log-uid": 0, "--log-macdecode": 0,
		},
		compile: compileLog,
	},
}
