package iptables

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// This file turns a rule specification, as written in an iptables-restore
// payload, into the text iptables-save prints for it, so that the Fake's
// Save output matches the kernel's and rules can be matched for -D and -C.
//
// Canonicalised (each verified against iptables 1.8.9, nft and legacy):
//   - "any" is dropped: -s/-d 0.0.0.0/0 (::/0), -i/-o +, -p all; a port
//     range N:N becomes N;
//   - blanks and quoting: comment and log-prefix values are quoted only
//     when they contain characters outside [A-Za-z0-9_-] (with \" \' \\
//     escapes), like libxtables' xtables_save_string;
//   - -s/-d/-i/-o/-p (long forms too, with "!") are moved to the front in
//     that order; addresses get their prefix length (/32, /128) and are
//     masked; dotted netmasks become lengths; "-p all" disappears and
//     protocol numbers 6/17/132 become names;
//   - tcp/udp/sctp options without their match get "-m PROTO" inserted
//     where the first such option appears; --destination-port/--source-port
//     become --dport/--sport; --syn becomes --tcp-flags FIN,SYN,RST,ACK SYN;
//   - -m mark --mark and -j MARK (--set-mark, --or-mark, --and-mark,
//     --xor-mark, --set-xmark) become kernel hex form;
//   - -m statistic --probability is rounded like the kernel stores it and
//     printed with 11 decimals;
//   - -m recent options are reordered and defaulted (--mask, --rsource);
//   - REJECT gets its default --reject-with.
//
// Everything else is kept verbatim, in the order given: write other
// matches' options in iptables-save order.

// ruleToken is one argv word of a rule.
type ruleToken struct {
	s string
	// free marks free-text values (comments, log prefixes), which
	// iptables-save prints through xtables_save_string.
	free bool
	// implicit marks words iptables-save prints for a default that was
	// not given. The kernel stores such a rule differently from one that
	// spells the default out, so "-D" tells them apart (verified for
	// -m recent --mask); implicit words are left out of the rule's key.
	implicit bool
}

// splitRestoreLine splits a payload line into words the way
// iptables-restore does: blanks separate words, double quotes group, and
// inside quotes a backslash escapes the next character. Single quotes and
// backslashes outside double quotes are literal.
func splitRestoreLine(line string) ([]string, error) {
	var (
		words   []string
		cur     strings.Builder
		inWord  bool
		inQuote bool
		escaped bool
	)
	flush := func() {
		if inWord {
			words = append(words, cur.String())
		}
		cur.Reset()
		inWord = false
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case inQuote && escaped:
			cur.WriteByte(c)
			escaped = false
		case inQuote && c == '\\':
			escaped = true
		case inQuote && c == '"':
			inQuote = false
		case inQuote:
			cur.WriteByte(c)
		case c == '"':
			inQuote, inWord = true, true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			flush()
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inQuote {
		return nil, fmt.Errorf("unterminated quote")
	}
	flush()
	return words, nil
}

// saveString formats a value like xtables_save_string: bare when it only
// holds [A-Za-z0-9_-], otherwise double-quoted with " ' \ escaped.
func saveString(v string) string {
	safe := v != ""
	for i := 0; i < len(v) && safe; i++ {
		c := v[i]
		safe = c == '_' || c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
	}
	if safe {
		return v
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '"' || c == '\'' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(v[i])
	}
	b.WriteByte('"')
	return b.String()
}

// valueOptions are options whose next word is free text printed with
// saveString by iptables-save.
var valueOptions = map[string]bool{"--comment": true, "--log-prefix": true, "--nflog-prefix": true}

// headerOptions maps the spellings of the options that live in the rule
// header to their canonical short form.
var headerOptions = map[string]string{
	"-s": "-s", "--source": "-s", "--src": "-s",
	"-d": "-d", "--destination": "-d", "--dst": "-d",
	"-i": "-i", "--in-interface": "-i",
	"-o": "-o", "--out-interface": "-o",
	"-p": "-p", "--protocol": "-p",
}

// headerOrder is the order iptables-save prints header options in.
var headerOrder = []string{"-s", "-d", "-i", "-o", "-p"}

// groupKinds maps the spellings of -m, -j and -g to the short form.
var groupKinds = map[string]string{"-m": "-m", "--match": "-m", "-j": "-j", "--jump": "-j", "-g": "-g", "--goto": "-g"}

// protoOptions are the tcp/udp/sctp match options that load the protocol
// match implicitly when "-m PROTO" was not given.
var protoOptions = map[string]bool{
	"--dport": true, "--sport": true, "--destination-port": true, "--source-port": true,
	"--syn": true, "--tcp-flags": true, "--tcp-option": true, "--chunk-types": true,
}

// protoNames maps protocol spellings to what iptables-save prints.
var protoNames = map[string]string{"6": "tcp", "17": "udp", "132": "sctp", "1": "icmp", "58": "ipv6-icmp", "icmpv6": "ipv6-icmp"}

// canonicalRule is a parsed, canonicalised rule specification.
type canonicalRule struct {
	// spec is the iptables-save text after "-A CHAIN ".
	spec string
	// key identifies the rule for "-D" and "-C": spec without implicit
	// defaults.
	key string
	// target is the -j/-g argument, "" when the rule has none.
	target string
	// proto is the non-negated -p value ("" when absent or negated).
	proto string
}

// canonicalizeRule canonicalises the argv words of a rule specification.
func canonicalizeRule(family Family, words []string) (canonicalRule, error) {
	toks := make([]ruleToken, len(words))
	for i, w := range words {
		toks[i] = ruleToken{s: w}
	}
	var header [5][]string // indexed like headerOrder
	slot := func(opt string) int {
		for i, o := range headerOrder {
			if o == opt {
				return i
			}
		}
		return -1
	}
	rest := make([]ruleToken, 0, len(toks))
	var proto string
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		neg := false
		if t.s == "!" && i+1 < len(toks) && headerOptions[toks[i+1].s] != "" {
			neg, i = true, i+1
			t = toks[i]
		}
		opt := headerOptions[t.s]
		if opt == "" {
			rest = append(rest, t)
			if valueOptions[t.s] && i+1 < len(toks) {
				i++
				rest = append(rest, ruleToken{s: toks[i].s, free: true})
			}
			continue
		}
		if i+1 >= len(toks) {
			return canonicalRule{}, fmt.Errorf("option %q requires an argument", t.s)
		}
		if header[slot(opt)] != nil {
			return canonicalRule{}, fmt.Errorf("multiple %s flags not allowed", opt)
		}
		i++
		val := toks[i].s
		switch opt {
		case "-s", "-d":
			val = canonicalAddress(family, val)
			if !neg && (val == "0.0.0.0/0" || val == "::/0") {
				header[slot(opt)] = []string{} // "any" is not printed
				continue
			}
		case "-i", "-o":
			if !neg && val == "+" {
				header[slot(opt)] = []string{}
				continue
			}
		case "-p":
			val = strings.ToLower(val)
			if n, ok := protoNames[val]; ok {
				val = n
			}
			if val == "all" || val == "0" {
				if neg {
					return canonicalRule{}, fmt.Errorf("rule would never match protocol")
				}
				header[slot(opt)] = []string{}
				continue
			}
			if !neg {
				proto = val
			}
		}
		words := []string{opt, val}
		if neg {
			words = []string{"!", opt, val}
		}
		header[slot(opt)] = words
	}

	var out []string
	for _, words := range header {
		out = append(out, words...)
	}
	body, key, target, err := canonicalBody(family, proto, rest)
	if err != nil {
		return canonicalRule{}, err
	}
	spec := strings.Join(append(slices.Clip(out), body...), " ")
	cr := canonicalRule{spec: spec, key: spec, target: target, proto: proto}
	if key != nil {
		cr.key = strings.Join(append(out, key...), " ")
	}
	return cr, nil
}

// ruleGroup is one "-m NAME ..." or "-j NAME ..." section of a rule.
type ruleGroup struct {
	kind string // "-m", "-j" or "-g"; "" for words before any group
	name string
	args []ruleToken
}

// canonicalBody canonicalises the match and target sections and renders
// them to words as printed and, only when they differ, as the rule's key
// (nil otherwise); it also returns the target.
func canonicalBody(family Family, proto string, toks []ruleToken) (spec, key []string, target string, err error) {
	groups := []*ruleGroup{{}}
	protoLoaded := false
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		cur := groups[len(groups)-1]
		switch {
		case !t.free && (t.s == "-m" || t.s == "--match" || t.s == "-j" || t.s == "--jump" || t.s == "-g" || t.s == "--goto"):
			if i+1 >= len(toks) {
				return nil, nil, "", fmt.Errorf("option %q requires an argument", t.s)
			}
			kind := groupKinds[t.s]
			i++
			name := toks[i].s
			if kind == "-m" && name == proto && proto != "" {
				protoLoaded = true
			}
			if kind == "-m" && (name == "tcp" || name == "udp" || name == "sctp") && name != proto {
				return nil, nil, "", fmt.Errorf("%s match: only valid for protocol %s (got -p %q)", name, name, proto)
			}
			groups = append(groups, &ruleGroup{kind: kind, name: name})
		case !t.free && protoOptions[t.s] && !protoLoaded && cur.name != proto && cur.kind != "-j" && cur.kind != "-g":
			if proto != "tcp" && proto != "udp" && proto != "sctp" {
				return nil, nil, "", fmt.Errorf("unknown option %q", t.s)
			}
			protoLoaded = true
			g := &ruleGroup{kind: "-m", name: proto}
			if n := len(cur.args); n > 0 && cur.args[n-1].s == "!" && !cur.args[n-1].free {
				cur.args = cur.args[:n-1]
				g.args = append(g.args, ruleToken{s: "!"})
			}
			g.args = append(g.args, t)
			groups = append(groups, g)
		default:
			cur.args = append(cur.args, t)
			if !t.free && valueOptions[t.s] && i+1 < len(toks) {
				i++
				cur.args = append(cur.args, toks[i])
			}
		}
	}

	hasImplicit := false
	for gi, g := range groups {
		if g.kind == "" {
			if len(g.args) > 0 {
				return nil, nil, "", fmt.Errorf("unexpected argument %q", g.args[0].s)
			}
			continue
		}
		if g.kind != "-m" {
			if target != "" {
				return nil, nil, "", fmt.Errorf("multiple targets (-j/-g) not allowed")
			}
			if gi != len(groups)-1 {
				return nil, nil, "", fmt.Errorf("matches after the target are not supported by the fake")
			}
			target = g.name
		}
		args, err := canonicalGroup(family, proto, g)
		if err != nil {
			return nil, nil, "", err
		}
		spec = append(spec, g.kind, g.name)
		key = append(key, g.kind, g.name)
		for _, a := range args {
			w := renderWord(a)
			spec = append(spec, w)
			if !a.implicit {
				key = append(key, w)
			}
			hasImplicit = hasImplicit || a.implicit
		}
	}
	if !hasImplicit {
		key = nil
	}
	return spec, key, target, nil
}

// renderWord prints one word: free-text values with saveString, other
// words bare unless they could not be re-read that way.
func renderWord(t ruleToken) string {
	if t.free || strings.ContainsAny(t.s, " \t\"'\\") || t.s == "" {
		return saveString(t.s)
	}
	return t.s
}

// canonicalGroup canonicalises the arguments of one match or target.
func canonicalGroup(family Family, proto string, g *ruleGroup) ([]ruleToken, error) {
	switch {
	case g.kind == "-m" && (g.name == "tcp" || g.name == "udp" || g.name == "sctp"):
		var out []ruleToken
		for i, t := range g.args {
			if i > 0 && (g.args[i-1].s == "--dport" || g.args[i-1].s == "--sport" ||
				g.args[i-1].s == "--destination-port" || g.args[i-1].s == "--source-port") {
				if lo, hi, ok := strings.Cut(t.s, ":"); ok && lo == hi {
					t.s = lo
				}
			}
			switch t.s {
			case "--destination-port":
				t.s = "--dport"
			case "--source-port":
				t.s = "--sport"
			case "--syn":
				if g.name != "tcp" {
					return nil, fmt.Errorf("unknown option %q", t.s)
				}
				out = append(out, ruleToken{s: "--tcp-flags"}, ruleToken{s: "FIN,SYN,RST,ACK"}, ruleToken{s: "SYN"})
				continue
			}
			out = append(out, t)
		}
		return out, nil
	case g.kind == "-m" && g.name == "mark":
		return rewriteOption(g.args, "--mark", func(v string) (string, error) { return canonicalMark(v, false) })
	case g.kind == "-m" && g.name == "statistic":
		return rewriteOption(g.args, "--probability", canonicalProbability)
	case g.kind == "-m" && g.name == "recent":
		return canonicalRecent(family, g.args)
	case g.kind == "-j" && g.name == "MARK":
		return canonicalMarkTarget(g.args)
	case g.kind == "-j" && g.name == "REJECT":
		for _, t := range g.args {
			if t.s == "--reject-with" {
				return g.args, nil
			}
		}
		def := "icmp-port-unreachable"
		if family == IPv6 {
			def = "icmp6-port-unreachable"
		}
		return append(append([]ruleToken(nil), g.args...), ruleToken{s: "--reject-with"}, ruleToken{s: def}), nil
	case (g.kind == "-j" || g.kind == "-g") && (g.name == "DNAT" || g.name == "SNAT"):
		for i, t := range g.args {
			if (t.s == "--to-destination" || t.s == "--to-source") && i+1 < len(g.args) && hasPort(g.args[i+1].s) &&
				proto != "tcp" && proto != "udp" && proto != "sctp" && proto != "dccp" {
				return nil, fmt.Errorf("need TCP, UDP, SCTP or DCCP with port specification")
			}
		}
	}
	return g.args, nil
}

// hasPort reports whether a DNAT/SNAT address range names a port.
func hasPort(v string) bool {
	if strings.HasPrefix(v, "[") {
		return strings.Contains(v, "]:")
	}
	return strings.Count(v, ":") == 1
}

// rewriteOption applies fn to the value of every occurrence of opt.
func rewriteOption(args []ruleToken, opt string, fn func(string) (string, error)) ([]ruleToken, error) {
	out := append([]ruleToken(nil), args...)
	for i := 0; i < len(out)-1; i++ {
		if out[i].s == opt {
			v, err := fn(out[i+1].s)
			if err != nil {
				return nil, err
			}
			out[i+1] = ruleToken{s: v}
			i++
		}
	}
	return out, nil
}

// canonicalAddress returns addr in iptables-save form, or addr unchanged
// when it is not a literal address (host names, lists).
func canonicalAddress(family Family, addr string) string {
	ip, mask, hasMask := strings.Cut(addr, "/")
	a, err := netip.ParseAddr(ip)
	if err != nil || (family == IPv4) != a.Is4() {
		return addr
	}
	bits := a.BitLen()
	if hasMask {
		if n, err := strconv.Atoi(mask); err == nil {
			bits = n
		} else if m, err := netip.ParseAddr(mask); err == nil && m.Is4() == a.Is4() {
			bits = maskBits(m)
		} else {
			return addr
		}
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return addr
	}
	return p.String()
}

// maskBits counts the leading one bits of a netmask.
func maskBits(m netip.Addr) int {
	n := 0
	for _, b := range m.AsSlice() {
		for i := 7; i >= 0 && b&(1<<i) != 0; i-- {
			n++
		}
		if b != 0xff {
			break
		}
	}
	return n
}

// parseMark parses "VALUE[/MASK]" in any C integer base; mask defaults
// to 0xffffffff.
func parseMark(v string) (value, mask uint32, err error) {
	vs, ms, hasMask := strings.Cut(v, "/")
	val, err := strconv.ParseUint(vs, 0, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("bad mark value %q", v)
	}
	msk := uint64(math.MaxUint32)
	if hasMask {
		if msk, err = strconv.ParseUint(ms, 0, 32); err != nil {
			return 0, 0, fmt.Errorf("bad mark mask %q", v)
		}
	}
	return uint32(val), uint32(msk), nil
}

// canonicalMark formats a mark match value; a full mask is omitted unless
// alwaysMask is set.
func canonicalMark(v string, alwaysMask bool) (string, error) {
	val, msk, err := parseMark(v)
	if err != nil {
		return "", err
	}
	if msk == math.MaxUint32 && !alwaysMask {
		return fmt.Sprintf("0x%x", val), nil
	}
	return fmt.Sprintf("0x%x/0x%x", val, msk), nil
}

// canonicalMarkTarget rewrites the MARK target's variants to --set-xmark.
func canonicalMarkTarget(args []ruleToken) ([]ruleToken, error) {
	if len(args) != 2 {
		return args, nil
	}
	opt, v := args[0].s, args[1].s
	val, msk, err := parseMark(v)
	if err != nil {
		return nil, err
	}
	switch opt {
	case "--set-xmark", "--set-mark":
	case "--or-mark":
		msk = val
	case "--and-mark":
		val, msk = 0, ^val
	case "--xor-mark":
		msk = 0
	default:
		return args, nil
	}
	return []ruleToken{{s: "--set-xmark"}, {s: fmt.Sprintf("0x%x/0x%x", val, msk)}}, nil
}

// canonicalProbability rounds p the way xt_statistic stores it (a 31-bit
// fraction) and prints it with 11 decimals, as iptables-save does.
func canonicalProbability(v string) (string, error) {
	p, err := strconv.ParseFloat(v, 64)
	if err != nil || p < 0 || p > 1 {
		return "", fmt.Errorf("bad probability %q", v)
	}
	stored := math.Round(p * 0x80000000)
	return strconv.FormatFloat(stored/0x80000000, 'f', 11, 64), nil
}

// canonicalRecent reorders -m recent options into libxt_recent's save
// order and fills in the defaults it prints.
func canonicalRecent(family Family, args []ruleToken) ([]ruleToken, error) {
	var (
		invert                        bool
		cmds                          []string
		seconds, hitcount, name, mask string
		reap, rttl                    bool
		side                          = "--rsource"
	)
	for i := 0; i < len(args); i++ {
		a := args[i].s
		next := func() (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("recent: option %q requires an argument", a)
			}
			i++
			return args[i].s, nil
		}
		var err error
		switch a {
		case "!":
			invert = true
		case "--set", "--rcheck", "--update", "--remove":
			cmds = append(cmds, a)
		case "--seconds":
			seconds, err = next()
		case "--hitcount":
			hitcount, err = next()
		case "--name":
			name, err = next()
		case "--mask":
			mask, err = next()
		case "--reap":
			reap = true
		case "--rttl":
			rttl = true
		case "--rsource", "--rdest":
			side = a
		default:
			return args, nil // unknown option: keep verbatim
		}
		if err != nil {
			return nil, err
		}
	}
	if len(cmds) != 1 {
		return nil, fmt.Errorf("recent: exactly one of --set, --rcheck, --update or --remove is required")
	}
	if name == "" {
		name = "DEFAULT"
	}
	defaultMask := mask == ""
	if defaultMask {
		mask = "255.255.255.255"
		if family == IPv6 {
			mask = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
		}
	}
	var out []ruleToken
	add := func(implicit bool, s ...string) {
		for _, w := range s {
			out = append(out, ruleToken{s: w, implicit: implicit})
		}
	}
	if invert {
		add(false, "!")
	}
	add(false, cmds[0])
	if seconds != "" && seconds != "0" {
		add(false, "--seconds", seconds)
	}
	if reap {
		add(false, "--reap")
	}
	if hitcount != "" && hitcount != "0" {
		add(false, "--hitcount", hitcount)
	}
	if rttl {
		add(false, "--rttl")
	}
	add(false, "--name", name)
	// Only IPv4 stores a defaulted mask differently (IPv6 -D matches
	// either way; verified on 1.8.9).
	add(defaultMask && family == IPv4, "--mask", mask)
	add(false, side)
	return out, nil
}
