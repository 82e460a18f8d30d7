package iptablestest

import (
	"net/netip"
	"testing"
)

// FuzzParse checks that no input makes the parser (or the tracer, on what
// the parser accepts) panic, and that the canonical form is stable.
func FuzzParse(f *testing.F) {
	for _, s := range []string{kubeDumpV4, kubeDumpV6, ipsetDump, maskDispatchDump, jumpGotoDump, brokenDump, branchDump} {
		f.Add(s)
	}
	pkts := []Packet{
		pkt("10.0.0.2", "172.30.0.41", 80),
		local(pkt("192.168.0.10", "172.30.0.41", 80)),
		pkt("fd00:10::9", "fd00:30::41", 80),
	}
	f.Fuzz(func(t *testing.T, text string) {
		d, err := ParseDump(text)
		if err != nil {
			return
		}
		canon := d.String()
		d2, err := ParseDump(canon)
		if err != nil {
			t.Fatalf("canonical form does not parse: %v\n%s", err, canon)
		}
		if again := d2.String(); again != canon {
			t.Fatalf("canonical form is not stable:\n%q\n%q", canon, again)
		}
		_ = d.Validate()
		opts := TraceOptions{
			MaxSteps:    10_000,
			MaxOutcomes: 100,
			IPSets:      map[string]Set{"S": {Type: "hash:ip", Entries: []string{"10.0.0.1"}}},
			Recent:      map[string][]netip.Addr{"X": {netip.MustParseAddr("10.0.0.2")}},
		}
		for _, p := range pkts {
			out, _ := Trace(d, p, opts)
			_ = out.String()
		}
	})
}
