package iptablestest

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// wrapNat puts rule lines in a nat table with a few user chains.
func wrapNat(rules ...string) string {
	return "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:KUBE-X - [0:0]\n" +
		strings.Join(rules, "\n") + "\nCOMMIT\n"
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name     string
		text     string
		wantLine int
		wantMsg  string
	}{
		{"unterminated quote", wrapNat(`-A KUBE-X -m comment --comment "oops -j ACCEPT`), 6, "unterminated quote"},
		{"unknown table", "*bogus\nCOMMIT\n", 1, "unknown table"},
		{"missing COMMIT", "*nat\n:KUBE-X - [0:0]\n", 2, "has no COMMIT"},
		{"rule outside a table", "-A KUBE-X -j ACCEPT\n", 1, "outside a table"},
		{"duplicate table", "*nat\nCOMMIT\n*nat\nCOMMIT\n", 3, "appears twice"},
		{"undeclared chain", wrapNat("-A KUBE-Y -j ACCEPT"), 6, "not declared"},
		{"bad address", wrapNat("-A KUBE-X -d 300.1.1.1/32 -j ACCEPT"), 6, "invalid address"},
		{"bad prefix length", wrapNat("-A KUBE-X -s 10.0.0.0/33 -j ACCEPT"), 6, "invalid prefix length"},
		{"bad port range", wrapNat("-A KUBE-X -p tcp -m tcp --dport 90:80 -j ACCEPT"), 6, "min > max"},
		{"tcp match without -p tcp", wrapNat("-A KUBE-X -m tcp --dport 80 -j ACCEPT"), 6, "requires -p tcp"},
		{"multiport limit", wrapNat("-A KUBE-X -p tcp -m multiport --dports 1:2,3:4,5:6,7:8,9:10,11:12,13:14,15:16 -j ACCEPT"), 6, "too many ports"},
		{"chain name too long", "*nat\n:KUBE-SVC-0123456789012345678901 - [0:0]\nCOMMIT\n", 2, "longer than 28"},
		{"jump to a built-in chain", wrapNat("-A KUBE-X -j PREROUTING"), 6, "built-in chain"},
		{"options on a chain jump", wrapNat("-A KUBE-X -j KUBE-X --foo"), 6, "takes no options"},
		{"bad built-in policy", "*nat\n:PREROUTING - [0:0]\nCOMMIT\n", 2, "needs policy"},
		{"policy on a user chain", "*nat\n:KUBE-X ACCEPT [0:0]\nCOMMIT\n", 2, "cannot have policy"},
		{"comment too long", wrapNat(`-A KUBE-X -m comment --comment "` + strings.Repeat("x", 256) + `"`), 6, "comment longer"},
		{"DNAT port without protocol", wrapNat("-A KUBE-X -j DNAT --to-destination 10.0.0.1:80"), 6, "needs -p tcp"},
		{"mixed families", wrapNat("-A KUBE-X -d 10.0.0.1/32 -j ACCEPT", "-A KUBE-X -d fd00::1/128 -j ACCEPT"), 7, "IPv6 address in a dump of IPv4"},
		{"bad mark", wrapNat("-A KUBE-X -m mark --mark 0xzz -j ACCEPT"), 6, "invalid value"},
		{"bad counters", "*nat\n:PREROUTING ACCEPT [x:0]\nCOMMIT\n", 2, "invalid counters"},
		{"unknown base option", wrapNat("-A KUBE-X -z -j ACCEPT"), 6, "unknown option -z"},
		{"trailing negation", wrapNat("-A KUBE-X -j ACCEPT !"), 6, "at the end"},
		{"unsupported command", wrapNat("-I KUBE-X 1 -j ACCEPT"), 6, "unsupported command -I"},
		{"unknown option of a known target", wrapNat("-A KUBE-X -j MARK --set-foo 1"), 6, "unknown option --set-foo"},
		{"option nobody owns", wrapNat("-A KUBE-X --dport 80 -j ACCEPT"), 6, "no loaded match knows it"},
		{"missing option argument", wrapNat("-A KUBE-X -p tcp -m tcp --dport"), 6, "needs 1 argument"},
		{"bad statistic probability", wrapNat("-A KUBE-X -m statistic --mode random --probability 1.5 -j ACCEPT"), 6, "invalid probability"},
		{"recent without command", wrapNat("-A KUBE-X -m recent --name X -j ACCEPT"), 6, "is required"},
		{"bad set flag", wrapNat("-A KUBE-X -m set --match-set S dst,up -j ACCEPT"), 6, "want src or dst"},
		{"unknown addrtype", wrapNat("-A KUBE-X -m addrtype --dst-type LOCALISH -j ACCEPT"), 6, "unknown address type"},
		{"garbage line", "*nat\nhello\nCOMMIT\n", 2, "unrecognised line"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseDump(tc.text)
			var perr *ParseError
			if !errors.As(err, &perr) {
				t.Fatalf("err = %v, want a *ParseError", err)
			}
			if perr.Line != tc.wantLine || !strings.Contains(perr.Error(), tc.wantMsg) {
				t.Errorf("err = %v (line %d), want line %d containing %q", err, perr.Line, tc.wantLine, tc.wantMsg)
			}
		})
	}
}

func TestParseGenericForm(t *testing.T) {
	d, err := ParseDump(wrapNat(
		`-A KUBE-X ! -s 10.0.0.0/8 -p tcp --dport 80 -m comment --comment "ns/svc:http \"quoted\" cluster IP" -j KUBE-X`,
		`-A KUBE-X -p tcp -m tcp ! --dport 443 -m set ! --match-set KUBE-SET dst,dst -j MARK --set-xmark 0x4000/0x4000`,
		`-A KUBE-X -m foo --bar 1 2 --baz -m tcp -p tcp --sport ! 53 -j CT --notrack`,
	))
	if err != nil {
		t.Fatal(err)
	}
	rules := d.Chain("nat", "KUBE-X").Rules
	want := []*Rule{{
		Base:    []Option{{Name: "-s", Negated: true, Values: []string{"10.0.0.0/8"}}, {Name: "-p", Values: []string{"tcp"}}},
		Matches: []Match{{Module: "tcp", Implicit: true, Options: []Option{{Name: "--dport", Values: []string{"80"}}}}, {Module: "comment", Options: []Option{{Name: "--comment", Values: []string{`ns/svc:http "quoted" cluster IP`}}}}},
		Target:  "KUBE-X",
	}, {
		Base: []Option{{Name: "-p", Values: []string{"tcp"}}},
		Matches: []Match{
			{Module: "tcp", Options: []Option{{Name: "--dport", Negated: true, Values: []string{"443"}}}},
			{Module: "set", Options: []Option{{Name: "--match-set", Negated: true, Values: []string{"KUBE-SET", "dst,dst"}}}},
		},
		Target:        "MARK",
		TargetOptions: []Option{{Name: "--set-xmark", Values: []string{"0x4000/0x4000"}}},
	}, {
		Base: []Option{{Name: "-p", Values: []string{"tcp"}}},
		Matches: []Match{
			{Module: "foo", Options: []Option{{Name: "--bar", Values: []string{"1", "2"}}, {Name: "--baz"}}},
			{Module: "tcp", Options: []Option{{Name: "--sport", Negated: true, Values: []string{"53"}}}},
		},
		Target:        "CT",
		TargetOptions: []Option{{Name: "--notrack"}},
	}}
	for i, w := range want {
		r := rules[i]
		if r.Num != i+1 || r.Line != 6+i || r.Table != "nat" || r.Chain != "KUBE-X" {
			t.Errorf("rule %d: position %s %s #%d line %d", i, r.Table, r.Chain, r.Num, r.Line)
		}
		got := &Rule{Base: r.Base, Matches: r.Matches, Target: r.Target, Goto: r.Goto, TargetOptions: r.TargetOptions}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("rule %d:\n got %+v\nwant %+v", i, got, w)
		}
	}
	if err := d.Validate(); err == nil || !errors.Is(err, ErrUnsupported) || !errors.Is(err, ErrNoChain) {
		t.Errorf("Validate() = %v, want unsupported module foo and unknown target CT", err)
	}
}

func TestValidate(t *testing.T) {
	if err := mustParse(t, kubeDumpV6).Validate(); err != nil {
		t.Errorf("kube-proxy IPv6 dump: %v", err)
	}
	err := mustParse(t, brokenDump).Validate()
	for _, want := range []error{ErrLoop, ErrUnsupported, ErrNoChain} {
		if !errors.Is(err, want) {
			t.Errorf("Validate() = %v, want %v among the errors", err, want)
		}
	}
	// kube-proxy's nfacct rule is the only thing the tracer does not know.
	err = mustParse(t, kubeDumpV4).Validate()
	if err == nil || !strings.Contains(err.Error(), `"nfacct"`) {
		t.Errorf("Validate() = %v, want the nfacct rule", err)
	}
}

func TestTokenize(t *testing.T) {
	cases := []struct {
		in   string
		want []token
	}{
		{`-A X -j ACCEPT`, []token{{"-A", false}, {"X", false}, {"-j", false}, {"ACCEPT", false}}},
		{"a\t \"b c\"  d", []token{{"a", false}, {"b c", true}, {"d", false}}},
		{`"a \"q\" \\ \'"`, []token{{`a "q" \ '`, true}}},
		{`x"y z"w`, []token{{"xy z", true}, {"w", false}}},
		{`""`, []token{{"", true}}},
		{`'single quotes' stay`, []token{{"'single", false}, {"quotes'", false}, {"stay", false}}},
	}
	for _, tc := range cases {
		got, err := tokenize(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("tokenize(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestIPMask(t *testing.T) {
	cases := []struct {
		mask, addr string
		want       bool
		str        string
	}{
		{"10.0.0.0/8", "10.1.2.3", true, "10.0.0.0/8"},
		{"10.0.0.0/8", "11.0.0.1", false, "10.0.0.0/8"},
		{"10.0.0.1", "10.0.0.1", true, "10.0.0.1/32"},
		{"10.0.0.0/255.255.0.0", "10.0.9.9", true, "10.0.0.0/16"},
		{"0.0.0.5/0.0.0.15", "172.30.0.21", true, "0.0.0.5/0.0.0.15"},
		{"0.0.0.5/0.0.0.15", "172.30.0.22", false, "0.0.0.5/0.0.0.15"},
		{"0.0.0.0/0", "1.2.3.4", true, "0.0.0.0/0"},
		{"fd00::/64", "fd00::1", true, "fd00::/64"},
		{"::5/::f", "fd00::15", true, "::5/::f"},
		{"::5/::f", "fd00::16", false, "::5/::f"},
		{"fd00::/ffff::", "fd00:1::1", true, "fd00::/16"},
		{"10.0.0.0/8", "fd00::1", false, "10.0.0.0/8"},
	}
	for _, tc := range cases {
		m, err := parseIPMask(tc.mask)
		if err != nil {
			t.Fatalf("parseIPMask(%q): %v", tc.mask, err)
		}
		if got := m.contains(mustAddr(tc.addr)); got != tc.want {
			t.Errorf("%s contains %s = %v", tc.mask, tc.addr, got)
		}
		if m.String() != tc.str {
			t.Errorf("String(%q) = %q, want %q", tc.mask, m, tc.str)
		}
	}
	for _, bad := range []string{"10.0.0.0/8.0", "fd00::/255.0.0.0", "10.0.0.0/ffff::", "x", "fe80::1%eth0"} {
		if _, err := parseIPMask(bad); err == nil {
			t.Errorf("parseIPMask(%q) succeeded", bad)
		}
	}
}
