package iptablestest

import (
	"net/netip"
	"strings"
	"testing"
)

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestDumpStringRoundTrip(t *testing.T) {
	for name, text := range map[string]string{
		"kube-proxy v4":  kubeDumpV4,
		"kube-proxy v6":  kubeDumpV6,
		"ipset glue":     ipsetDump,
		"mask dispatch":  maskDispatchDump,
		"counters":       "*filter\n:INPUT DROP [12:3456]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n[1:60] -A INPUT -i lo -j ACCEPT\nCOMMIT\n# Warning: iptables-legacy tables present\n",
		"no declaration": "*filter\n-A INPUT -j ACCEPT\nCOMMIT\n",
	} {
		t.Run(name, func(t *testing.T) {
			d, err := ParseDump(text)
			if err != nil {
				t.Fatal(err)
			}
			if got := d.String(); got != text {
				t.Errorf("String() differs from the input:\n got %q\nwant %q", got, text)
			}
		})
	}
}

func TestDumpStringCanonical(t *testing.T) {
	// Rules interleaved between chains and declared out of order are
	// grouped by chain; comments inside the table are dropped.
	in := "*nat\n:KUBE-B - [0:0]\n:KUBE-A - [0:0]\n-A KUBE-A -j RETURN\n# inner comment\n-A KUBE-B -j KUBE-A\n-A KUBE-A -j KUBE-B\n-A PREROUTING -j KUBE-B\nCOMMIT"
	want := "*nat\n:KUBE-B - [0:0]\n:KUBE-A - [0:0]\n-A KUBE-B -j KUBE-A\n-A KUBE-A -j RETURN\n-A KUBE-A -j KUBE-B\n-A PREROUTING -j KUBE-B\nCOMMIT\n"
	d, err := ParseDump(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.String(); got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	d2, err := ParseDump(d.String())
	if err != nil || d2.String() != want {
		t.Errorf("canonical form is not stable: %v", err)
	}
}

func TestDumpLookups(t *testing.T) {
	d := mustParse(t, kubeDumpV4)
	if len(d.Tables) != 3 || d.Tables[2].Name != "nat" || d.Table("nat") != d.Tables[2] {
		t.Fatalf("tables: %v", d.Tables)
	}
	c := d.Chain("nat", "KUBE-SVC-XPGD46QRK7WJZT7O")
	if c == nil || len(c.Rules) != 4 || c.BuiltIn() || c.Policy != "-" {
		t.Fatalf("chain: %+v", c)
	}
	if r := c.Rules[3]; r.Num != 4 || !strings.HasSuffix(r.String(), "-j KUBE-SEP-OYPFS5VJICHGATKP") {
		t.Errorf("rule: %d %s", r.Num, r)
	}
	if d.Chain("nat", "NOPE") != nil || d.Chain("raw", "PREROUTING") != nil || d.Table("raw") != nil {
		t.Error("lookups of missing chains and tables must return nil")
	}
	if in := d.Chain("filter", "INPUT"); !in.BuiltIn() || in.Policy != "ACCEPT" || d.Table("filter").Chain("INPUT") != in {
		t.Errorf("filter INPUT: %+v", in)
	}
}
