package iptablestest

import (
	"errors"
	"slices"
	"testing"
)

func TestParseIPSetSave(t *testing.T) {
	sets, err := ParseIPSetSave(ipsetSave + "create V6 hash:net family inet6 hashsize 1024 maxelem 65536\nadd V6 fd00::/64 comment \"nomatch is only a comment here\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if s := sets["KUBE-CLUSTER-IP"]; s.Type != "hash:ip,port" || s.Family != "inet" || !slices.Equal(s.Entries, []string{"172.30.0.1,tcp:443", "172.30.0.10,udp:53"}) {
		t.Errorf("KUBE-CLUSTER-IP = %+v", s)
	}
	if s := sets["V6"]; s.Family != "inet6" || len(s.Entries) != 1 {
		t.Errorf("V6 = %+v", s)
	}
	for name, text := range map[string]string{
		"add before create": "add X 10.0.0.1\n",
		"unknown type":      "create X list:set\n",
		"bad element":       "create X hash:ip\nadd X 10.0.0.0/8\n",
		"wrong family":      "create X hash:ip family inet6\nadd X 10.0.0.1\n",
		"bad port":          "create X hash:ip,port\nadd X 10.0.0.1,tcp:http\n",
		"unknown command":   "flush X\n",
		"created twice":     "create X hash:ip\ncreate X hash:ip\n",
	} {
		var perr *ParseError
		if _, err := ParseIPSetSave(text); err == nil || (name != "bad element" && name != "wrong family" && name != "bad port" && !errors.As(err, &perr)) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

// setDump drops packets matching set S with the given flags, whether they
// are delivered locally or forwarded.
func setDump(flags string) string {
	rule := " -m set --match-set S " + flags + " -j DROP\n"
	return "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n-A INPUT" + rule + "-A FORWARD" + rule + "COMMIT\n"
}

func TestSetTypes(t *testing.T) {
	cases := []struct {
		name  string
		set   Set
		flags string
		pkt   Packet
		want  []Verdict
	}{
		{"hash:ip dst", Set{Type: "hash:ip", Entries: []string{"10.180.0.1"}}, "dst", pkt("10.0.0.2", "10.180.0.1", 80), []Verdict{Drop}},
		{"hash:ip src misses", Set{Type: "hash:ip", Entries: []string{"10.180.0.1"}}, "src", pkt("10.0.0.2", "10.180.0.1", 80), []Verdict{Accept}},
		{"hash:net most specific nomatch wins", Set{Type: "hash:net", Entries: []string{"10.0.0.0/8", "10.180.0.0/16 nomatch"}}, "dst", pkt("10.0.0.2", "10.180.0.1", 80), []Verdict{Accept}},
		{"hash:net outer prefix", Set{Type: "hash:net", Entries: []string{"10.0.0.0/8", "10.180.0.0/16 nomatch"}}, "dst", pkt("10.0.0.2", "10.181.0.1", 80), []Verdict{Drop}},
		{"hash:ip,port", Set{Type: "hash:ip,port", Entries: []string{"10.180.0.1,tcp:80"}}, "dst,dst", pkt("10.0.0.2", "10.180.0.1", 80), []Verdict{Drop}},
		{"hash:ip,port default protocol is tcp", Set{Type: "hash:ip,port", Entries: []string{"10.180.0.1,80"}}, "dst,dst", pkt("10.0.0.2", "10.180.0.1", 80), []Verdict{Drop}},
		{"hash:ip,port wrong port", Set{Type: "hash:ip,port", Entries: []string{"10.180.0.1,tcp:80"}}, "dst,dst", pkt("10.0.0.2", "10.180.0.1", 81), []Verdict{Accept}},
		{"hash:ip,port with fewer flags never matches", Set{Type: "hash:ip,port", Entries: []string{"10.180.0.1,tcp:80"}}, "dst", pkt("10.0.0.2", "10.180.0.1", 80), []Verdict{Accept}},
		{"hash:ip,port,ip hairpin", Set{Type: "hash:ip,port,ip", Entries: []string{"10.180.0.1,tcp:80,10.180.0.1"}}, "dst,dst,src", pkt("10.180.0.1", "10.180.0.1", 80), []Verdict{Drop}},
		{"hash:ip,port,net source range", Set{Type: "hash:ip,port,net", Entries: []string{"192.168.99.22,tcp:80,203.0.113.0/24"}}, "dst,dst,src", pkt("203.0.113.7", "192.168.99.22", 80), []Verdict{Drop}},
		{"hash:ip,port,net outside the range", Set{Type: "hash:ip,port,net", Entries: []string{"192.168.99.22,tcp:80,203.0.113.0/24"}}, "dst,dst,src", pkt("198.51.100.7", "192.168.99.22", 80), []Verdict{Accept}},
		{"hash:net,port", Set{Type: "hash:net,port", Entries: []string{"10.0.0.0/8,tcp:30000-30010"}}, "src,dst", pkt("10.0.0.2", "192.168.0.10", 30005), []Verdict{Drop}},
		{"bitmap:port", Set{Type: "bitmap:port", Entries: []string{"30001"}}, "dst", pkt("203.0.113.7", "192.168.0.10", 30001), []Verdict{Drop}},
		{"source port dimension with unknown port branches", Set{Type: "bitmap:port", Entries: []string{"53"}}, "src", func() Packet { p := pkt("10.0.0.2", "10.180.0.1", 80); p.SourcePort = 0; return p }(), []Verdict{Accept, Drop}},
		{"family mismatch never matches", Set{Type: "hash:ip", Family: "inet6", Entries: []string{"fd00::1"}}, "dst", pkt("10.0.0.2", "10.180.0.1", 80), []Verdict{Accept}},
		{"IPv6 hash:ip,port", Set{Type: "hash:ip,port", Family: "inet6", Entries: []string{"fd00:30::41,tcp:80"}}, "dst,dst", pkt("fd00::2", "fd00:30::41", 80), []Verdict{Drop}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Trace(mustParse(t, setDump(tc.flags)), tc.pkt, TraceOptions{IPSets: map[string]Set{"S": tc.set}})
			if err != nil {
				t.Fatal(err)
			}
			if got := out.Verdicts(); !slices.Equal(got, tc.want) {
				t.Errorf("verdicts %v, want %v\n%s", got, tc.want, out)
			}
		})
	}
}
