package iptables

import (
	"slices"
	"testing"
)

// canonicalCases pair payload rule specs with what iptables-save 1.8.9
// (both variants) printed for them; the differential test re-checks a
// subset against the live kernel.
var canonicalCases = []struct {
	family Family
	in     string
	want   string
}{
	{IPv4, `-p tcp -d 10.0.0.1 -m comment --comment "ns/svc:p" -m tcp --dport 80 -j MMM`,
		`-d 10.0.0.1/32 -p tcp -m comment --comment "ns/svc:p" -m tcp --dport 80 -j MMM`},
	{IPv4, `-m comment --comment "plain" -j MMM`, `-m comment --comment plain -j MMM`},
	{IPv4, `-m comment --comment plainword -s 1.2.3.0/24 -p udp -m udp --dport 53 -j RETURN`,
		`-s 1.2.3.0/24 -p udp -m comment --comment plainword -m udp --dport 53 -j RETURN`},
	{IPv4, `-p tcp -m statistic --mode random --probability 0.5 -j DNAT --to-destination 10.1.1.1:80`,
		`-p tcp -m statistic --mode random --probability 0.50000000000 -j DNAT --to-destination 10.1.1.1:80`},
	{IPv4, `-m statistic --mode random --probability 0.3333333333 -j CONNMARK --set-xmark 0x1/0x1`,
		`-m statistic --mode random --probability 0.33333333349 -j CONNMARK --set-xmark 0x1/0x1`},
	{IPv4, `-m recent --name FOO --rcheck --seconds 10800 --reap -j RETURN`,
		`-m recent --rcheck --seconds 10800 --reap --name FOO --mask 255.255.255.255 --rsource -j RETURN`},
	{IPv4, `! -s 10.0.0.0/8 -m addrtype --dst-type LOCAL -j RETURN`, `! -s 10.0.0.0/8 -m addrtype --dst-type LOCAL -j RETURN`},
	{IPv4, `-p tcp --dport 99 -j RETURN`, `-p tcp -m tcp --dport 99 -j RETURN`},
	{IPv4, `-j MASQUERADE --random-fully`, `-j MASQUERADE --random-fully`},
	{IPv4, `-m conntrack --ctstate NEW -j REJECT`, `-m conntrack --ctstate NEW -j REJECT --reject-with icmp-port-unreachable`},
	{IPv4, `-m comment --comment "a\"b" -j DROP`, `-m comment --comment "a\"b" -j DROP`},
	{IPv4, `-j MARK --or-mark 0x4000`, `-j MARK --set-xmark 0x4000/0x4000`},
	{IPv4, `-j MARK --xor-mark 0x4000`, `-j MARK --set-xmark 0x4000/0x0`},
	{IPv4, `-j MARK --set-mark 16`, `-j MARK --set-xmark 0x10/0xffffffff`},
	{IPv4, `-j MARK --and-mark 0xff`, `-j MARK --set-xmark 0x0/0xffffff00`},
	{IPv4, `-m mark --mark 0x4000/0xffffffff -j RETURN`, `-m mark --mark 0x4000 -j RETURN`},
	{IPv4, `-m mark --mark 0x4000/0x0000ff00`, `-m mark --mark 0x4000/0xff00`},
	{IPv4, `-m mark ! --mark 10/16`, `-m mark ! --mark 0xa/0x10`},
	{IPv4, `-p 6 --destination-port 80`, `-p tcp -m tcp --dport 80`},
	{IPv4, `-p all -i eth0 ! -o eth1+`, `-i eth0 ! -o eth1+`},
	{IPv4, `-s 10.1.2.3/8 -d 10.0.0.1/255.255.0.0`, `-s 10.0.0.0/8 -d 10.0.0.0/16`},
	{IPv4, `-p udp ! --dport 53 -m comment --comment "x y"`, `-p udp -m udp ! --dport 53 -m comment --comment "x y"`},
	{IPv4, `--protocol TCP --source 1.2.3.4 --syn`, `-s 1.2.3.4/32 -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN`},
	{IPv4, `-p tcp -m multiport --dports 80,443 -m tcp --sport 1:2`, `-p tcp -m multiport --dports 80,443 -m tcp --sport 1:2`},
	{IPv4, `-m comment --comment "a_b-1" -m comment --comment 'x'`, `-m comment --comment a_b-1 -m comment --comment "\'x\'"`},
	{IPv4, `-m conntrack --ctstate NEW,ESTABLISHED -m addrtype ! --dst-type LOCAL`, `-m conntrack --ctstate NEW,ESTABLISHED -m addrtype ! --dst-type LOCAL`},
	{IPv6, `-j REJECT`, `-j REJECT --reject-with icmp6-port-unreachable`},
	{IPv6, `-p tcp -j REJECT --reject-with tcp-reset`, `-p tcp -j REJECT --reject-with tcp-reset`},
	{IPv6, `-s 2001:db8::1 -d 2001:db8::/32 -j ACCEPT`, `-s 2001:db8::1/128 -d 2001:db8::/32 -j ACCEPT`},
	{IPv6, `-d 2001:db8::5/64`, `-d 2001:db8::/64`},
	{IPv4, `--jump KUBE-X`, `-j KUBE-X`},
	{IPv4, `-s 0.0.0.0/0 -j RETURN`, `-j RETURN`},
	{IPv4, `-d 0.0.0.0/0 -p tcp -m tcp --dport 80:80 -j RETURN`, `-p tcp -m tcp --dport 80 -j RETURN`},
	{IPv4, `-i + -j RETURN`, `-j RETURN`},
	{IPv4, `-p tcp -m multiport --dports 80,443 -j RETURN`, `-p tcp -m multiport --dports 80,443 -j RETURN`},
	{IPv4, `-p TCP -j ACCEPT`, `-p tcp -j ACCEPT`},
	{IPv4, `-m comment --comment "" -j ACCEPT`, `-m comment --comment "" -j ACCEPT`},
	{IPv6, `-s ::/0 -d ::1 -j RETURN`, `-d ::1/128 -j RETURN`},
	{IPv4, ``, ``},
}

func TestCanonicalizeRule(t *testing.T) {
	for _, c := range canonicalCases {
		words, err := splitRestoreLine(c.in)
		if err != nil {
			t.Fatalf("split %q: %v", c.in, err)
		}
		got, err := canonicalizeRule(c.family, words)
		if err != nil {
			t.Errorf("canonicalizeRule(%q): %v", c.in, err)
			continue
		}
		if got.spec != c.want {
			t.Errorf("canonicalizeRule(%q)\n got  %s\n want %s", c.in, got.spec, c.want)
		}
		// Canonical text must be a fixed point.
		words2, _ := splitRestoreLine(got.spec)
		again, err := canonicalizeRule(c.family, words2)
		if err != nil || again.spec != got.spec {
			t.Errorf("not idempotent: %q -> %q (%v)", got.spec, again.spec, err)
		}
	}
}

func TestCanonicalizeRuleErrors(t *testing.T) {
	for _, in := range []string{
		`-j DNAT --to-destination 1.1.1.1:80`, // port needs a protocol
		`-m tcp --dport 80`,                   // tcp match needs -p tcp
		`-p udp --syn`,                        // --syn is tcp only
		`--dport 80`,                          // no protocol
		`-s`,                                  // missing argument
		`-s 1.1.1.1 -s 2.2.2.2`,               // duplicate header option
		`-j A -j B`,                           // two targets
		`-m recent --name X`,                  // recent needs a command
	} {
		words, _ := splitRestoreLine(in)
		if got, err := canonicalizeRule(IPv4, words); err == nil {
			t.Errorf("canonicalizeRule(%q) = %q, want error", in, got.spec)
		}
	}
}

func TestSplitRestoreLine(t *testing.T) {
	cases := map[string][]string{
		`-A X -m comment --comment "a b"`: {"-A", "X", "-m", "comment", "--comment", "a b"},
		`-A X --comment "a\"b\\c"`:        {"-A", "X", "--comment", `a"b\c`},
		`-A X --comment pre"mid dle"post`: {"-A", "X", "--comment", "premid dlepost"},
		"  -A\tX   -j  RETURN  ":          {"-A", "X", "-j", "RETURN"},
		`-A X --comment 'single'`:         {"-A", "X", "--comment", "'single'"},
		`-A X --comment a\b`:              {"-A", "X", "--comment", `a\b`},
		`-A X --comment ""`:               {"-A", "X", "--comment", ""},
	}
	for in, want := range cases {
		got, err := splitRestoreLine(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("splitRestoreLine(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := splitRestoreLine(`-A X --comment "open`); err == nil {
		t.Error("unterminated quote accepted")
	}
}

func TestSaveString(t *testing.T) {
	for in, want := range map[string]string{
		"plain": "plain", "a_b-1": "a_b-1", "ns/svc:p": `"ns/svc:p"`, "x y": `"x y"`,
		`a"b`: `"a\"b"`, "'x'": `"\'x\'"`, `a\b`: `"a\\b"`, "": `""`,
	} {
		if got := saveString(in); got != want {
			t.Errorf("saveString(%q) = %s, want %s", in, got, want)
		}
	}
}
