package iptablestest

import (
	"math"
	"net/netip"
	"strings"
	"testing"
)

// jumpGotoDump shows the difference between -j and -g: after -j INNER
// returns, OUTER continues (mark 0x10); after -g INNER returns, traversal
// resumes in FORWARD, skipping the rest of OUTER.
const jumpGotoDump = `*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:INNER - [0:0]
:OUTER - [0:0]
-A FORWARD -j OUTER
-A FORWARD -m mark --mark 0x111/0xfff -j ACCEPT
-A INNER -j MARK --or-mark 0x100
-A INNER -j RETURN
-A INNER -j MARK --or-mark 0x1000
-A OUTER -j MARK --or-mark 0x1
-A OUTER -p tcp -m tcp --dport 1 -j INNER
-A OUTER -p tcp -m tcp --dport 2 -g INNER
-A OUTER -j MARK --or-mark 0x10
COMMIT
`

// brokenDump holds rules the tracer must refuse when (and only when) a
// packet reaches them. The udp rule with -m socket is never reached by TCP
// packets because -p fails first.
const brokenDump = `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:GLOOP-A - [0:0]
:GLOOP-B - [0:0]
:LOOP-A - [0:0]
:LOOP-B - [0:0]
-A FORWARD -p udp -m socket --transparent -j DROP
-A FORWARD -p tcp -m tcp --dport 1 -j LOOP-A
-A FORWARD -p tcp -m tcp --dport 2 -j GLOOP-A
-A FORWARD -p tcp -m tcp --dport 3 -m socket -j ACCEPT
-A FORWARD -p tcp -m tcp --dport 4 -j NO-SUCH-CHAIN
-A FORWARD -p tcp -m tcp --dport 5 -j CT --notrack
-A FORWARD -p tcp -m tcp --dport 6 -m conntrack --ctexpire 10:20 -j ACCEPT
-A GLOOP-A -g GLOOP-B
-A GLOOP-B -g GLOOP-A
-A LOOP-A -j LOOP-B
-A LOOP-B -j LOOP-A
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -p tcp -m tcp --dport 9 -j REJECT
-A POSTROUTING -p tcp -m tcp --dport 7 -j DNAT --to-destination 10.9.9.9:80
COMMIT
`

// branchDump exercises matches whose outcome the tracer cannot know, and
// mark arithmetic.
const branchDump = `*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:AFFINITY - [0:0]
-A PREROUTING -p tcp -m tcp --dport 100 -m statistic --mode nth --every 4 --packet 0 -j DNAT --to-destination 10.9.0.1:80
-A PREROUTING -p tcp -m tcp --dport 101 -j AFFINITY
-A PREROUTING -p tcp -m tcp --dport 102 -m recent --set --name SEEN --rsource -j MARK --or-mark 0x1
-A PREROUTING -p tcp -m tcp --dport 102 -m recent --rcheck --name SEEN --rsource -j MARK --or-mark 0x2
-A AFFINITY -m recent --rcheck --name AFF --rsource -j MARK --or-mark 0x1
-A AFFINITY -m recent --rcheck --name AFF --rsource -j MARK --or-mark 0x2
-A POSTROUTING -o eth1 -p tcp -m tcp --dport 103 -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -p tcp -m tcp --dport 104 -m conntrack --ctstate DNAT -j MARK --or-mark 0x8
-A FORWARD -p tcp -m tcp --dport 110 -j MARK --set-xmark 0xf0/0xff
-A FORWARD -p tcp -m tcp --dport 110 -j MARK --and-mark 0x30
-A FORWARD -p tcp -m tcp --dport 110 -j MARK --xor-mark 0x1
-A FORWARD -p tcp -m tcp --dport 110 -j MARK --set-mark 0x400/0x400
-A FORWARD -p tcp -m tcp --dport 111 -j MARK --set-mark 0x7
-A FORWARD -p tcp -m tcp --dport 111 -j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff
-A FORWARD -p tcp -m tcp --dport 111 -j MARK --set-mark 0x0
-A FORWARD -p tcp -m tcp --dport 111 -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff
-A FORWARD -p tcp -m tcp --dport 111 -m connmark --mark 0x7 -j LOG --log-prefix "ct 7: "
-A FORWARD -i cali+ -p tcp -m multiport --dports 8000:8010,9000 -j MARK --or-mark 0x10
-A FORWARD -p tcp -m tcp --sport 53 --dport 120 -j REJECT --reject-with tcp-reset
-A FORWARD -p tcp -m tcp --dport 121 --syn -j DROP
-A FORWARD -m physdev --physdev-is-bridged -p tcp -m tcp --dport 122 -j DROP
-A FORWARD -p tcp -m tcp --dport 123 -m addrtype ! --src-type LOCAL -j DROP
-A OUTPUT -p tcp -m tcp --dport 123 -m addrtype --src-type LOCAL -j MARK --or-mark 0x40
COMMIT
`

func TestTraceSemantics(t *testing.T) {
	withPort := func(p Packet, sport uint16) Packet { p.SourcePort = sport; return p }
	runTraceCases(t, []traceCase{{
		name: "jump: RETURN resumes in the calling chain",
		dump: jumpGotoDump, pkt: pkt("10.0.0.2", "10.180.0.1", 1),
		wantVerdicts: []Verdict{Accept}, wantMark: u32(0x111),
	}, {
		name: "goto: RETURN resumes past the chain that did the goto, then policy DROP",
		dump: jumpGotoDump, pkt: pkt("10.0.0.2", "10.180.0.1", 2),
		wantVerdicts: []Verdict{Drop}, wantMark: u32(0x101),
		check: func(t *testing.T, out Outcomes) {
			last := out[0].Steps[len(out[0].Steps)-1]
			if last.Result != "policy DROP" {
				t.Errorf("last step %q, want the FORWARD policy", last)
			}
		},
	}, {
		name: "a jump loop is an error, not a hang",
		dump: brokenDump, pkt: pkt("10.0.0.2", "10.180.0.1", 1), wantErr: ErrLoop,
	}, {
		name: "a goto loop is an error, not a hang",
		dump: brokenDump, pkt: pkt("10.0.0.2", "10.180.0.1", 2), wantErr: ErrLoop,
	}, {
		name: "an unknown match module that is reached is an error",
		dump: brokenDump, pkt: pkt("10.0.0.2", "10.180.0.1", 3), wantErr: ErrUnsupported,
	}, {
		name: "a jump to a missing chain is an error",
		dump: brokenDump, pkt: pkt("10.0.0.2", "10.180.0.1", 4), wantErr: ErrNoChain,
	}, {
		name: "an unknown target is an error",
		dump: brokenDump, pkt: pkt("10.0.0.2", "10.180.0.1", 5), wantErr: ErrNoChain,
	}, {
		name: "an unsupported option of a known module is an error",
		dump: brokenDump, pkt: pkt("10.0.0.2", "10.180.0.1", 6), wantErr: ErrUnsupported,
	}, {
		name: "DNAT outside PREROUTING/OUTPUT is refused like the kernel does",
		dump: brokenDump, pkt: pkt("10.0.0.2", "10.180.0.1", 7), wantErr: ErrUnsupported,
	}, {
		name: "REJECT outside the filter table is refused like the kernel does",
		dump: brokenDump, pkt: pkt("10.0.0.2", "10.180.0.1", 9), wantErr: ErrUnsupported,
	}, {
		name: "unknown modules in rules that are not reached are fine",
		dump: brokenDump, pkt: pkt("10.0.0.2", "10.180.0.1", 8),
		wantVerdicts: []Verdict{Accept},
	}, {
		name: "statistic nth branches with probability 1/every",
		dump: branchDump, pkt: pkt("10.0.0.2", "10.180.0.1", 100),
		wantVerdicts: []Verdict{Accept}, wantEndpoints: aps("10.9.0.1:80"), wantOutcomes: 2,
		check: func(t *testing.T, out Outcomes) {
			if math.Abs(out[0].Probability-0.25) > 1e-9 || math.Abs(out[1].Probability-0.75) > 1e-9 {
				t.Errorf("probabilities %v, %v", out[0].Probability, out[1].Probability)
			}
		},
	}, {
		name: "recent checks of the same entry agree within a trace",
		dump: branchDump, pkt: pkt("10.0.0.2", "10.180.0.1", 101),
		wantOutcomes: 2,
		check: func(t *testing.T, out Outcomes) {
			if out[0].Mark != 0x3 || out[1].Mark != 0 {
				t.Errorf("marks %#x, %#x; want 0x3 and 0", out[0].Mark, out[1].Mark)
			}
		},
	}, {
		name: "recent --set is seen by a later --rcheck",
		dump: branchDump, pkt: pkt("10.0.0.2", "10.180.0.1", 102),
		wantOutcomes: 1, wantMark: u32(0x3),
	}, {
		name: "an unknown output interface explores both outcomes",
		dump: branchDump, pkt: pkt("10.0.0.2", "10.180.0.1", 103),
		wantOutcomes: 2, wantMasq: "sometimes",
		check: func(t *testing.T, out Outcomes) {
			if !strings.Contains(out[0].Assumptions[0], "output interface matches eth1") {
				t.Errorf("assumptions %q", out[0].Assumptions)
			}
		},
	}, {
		name: "a known output interface decides",
		dump: branchDump, pkt: func() Packet { p := pkt("10.0.0.2", "10.180.0.1", 103); p.OutInterface = "eth2"; return p }(),
		wantOutcomes: 1, wantMasq: "never",
	}, {
		name: "ctstate DNAT is false without DNAT",
		dump: branchDump, pkt: pkt("10.0.0.2", "10.180.0.1", 104), wantMark: u32(0),
	}, {
		name: "mark arithmetic follows the kernel",
		dump: branchDump, pkt: func() Packet { p := pkt("10.0.0.2", "10.180.0.1", 110); p.Mark = 0x3; return p }(),
		wantMark: u32(0x431),
	}, {
		name: "CONNMARK save and restore round-trip the mark",
		dump: branchDump, pkt: pkt("10.0.0.2", "10.180.0.1", 111), wantMark: u32(0x7),
		check: func(t *testing.T, out Outcomes) {
			if !strings.Contains(out.String(), "LOG (continue)") {
				t.Errorf("connmark match did not fire:\n%s", out)
			}
		},
	}, {
		name: "interface wildcard and multiport range",
		dump: branchDump, pkt: func() Packet { p := pkt("10.0.0.2", "10.180.0.1", 8005); p.InInterface = "cali1234"; return p }(),
		wantMark: u32(0x10),
	}, {
		name: "interface wildcard does not match another prefix",
		dump: branchDump, pkt: func() Packet { p := pkt("10.0.0.2", "10.180.0.1", 8005); p.InInterface = "eth0"; return p }(),
		wantMark: u32(0),
	}, {
		name: "an unknown source port explores both outcomes",
		dump: branchDump, pkt: withPort(pkt("10.0.0.2", "10.180.0.1", 120), 0),
		wantVerdicts: []Verdict{Accept, Reject}, wantOutcomes: 2,
	}, {
		name: "a known source port decides",
		dump: branchDump, pkt: withPort(pkt("10.0.0.2", "10.180.0.1", 120), 53),
		wantVerdicts: []Verdict{Reject}, wantOutcomes: 1,
	}, {
		name: "--syn matches the first packet of a connection",
		dump: branchDump, pkt: pkt("10.0.0.2", "10.180.0.1", 121),
		wantVerdicts: []Verdict{Drop},
	}, {
		name: "physdev --physdev-is-bridged needs a bridge output port",
		dump: branchDump, pkt: func() Packet { p := pkt("10.0.0.2", "10.180.0.1", 122); p.PhysOutInterface = "veth1"; return p }(),
		wantVerdicts: []Verdict{Drop},
	}, {
		name: "physdev does not match routed packets",
		dump: branchDump, pkt: pkt("10.0.0.2", "10.180.0.1", 122),
		wantVerdicts: []Verdict{Accept},
	}, {
		name: "addrtype --src-type LOCAL for local packets, negated for forwarded ones",
		dump: branchDump, pkt: local(pkt("192.168.0.10", "10.180.0.1", 123)),
		wantVerdicts: []Verdict{Accept}, wantMark: u32(0x40), wantPath: PathOutput,
	}, {
		name: "addrtype ! --src-type LOCAL drops forwarded packets",
		dump: branchDump, pkt: pkt("10.0.0.2", "10.180.0.1", 123),
		wantVerdicts: []Verdict{Drop},
	}})
}

func TestTraceCtstateDNAT(t *testing.T) {
	d := mustParse(t, `*nat
:PREROUTING ACCEPT [0:0]
-A PREROUTING -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.9.0.1
COMMIT
*filter
:FORWARD DROP [0:0]
-A FORWARD -m conntrack --ctstate DNAT --ctorigdst 172.30.0.1/32 --ctorigdstport 80 -j ACCEPT
COMMIT
`)
	out, err := Trace(d, pkt("10.0.0.2", "172.30.0.1", 80), TraceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].Verdict != Accept || out[0].Destination != netip.MustParseAddrPort("10.9.0.1:80") {
		t.Fatalf("got %s", out)
	}
}

func TestStepString(t *testing.T) {
	d := mustParse(t, jumpGotoDump)
	r := d.Chain("filter", "OUTER").Rules[1]
	steps := []struct {
		s    Step
		want string
	}{
		{Step{Table: "filter", Chain: "OUTER", Rule: r, Result: "jump INNER"}, "filter OUTER #2: -A OUTER -p tcp -m tcp --dport 1 -j INNER -> jump INNER"},
		{Step{Table: "filter", Chain: "FORWARD", Result: "policy DROP"}, "filter FORWARD: policy DROP"},
		{Step{Result: "10.0.0.1 is local -> INPUT"}, "routing: 10.0.0.1 is local -> INPUT"},
		{Step{Table: "filter", Chain: "OUTER", Rule: r, Result: "no match", Assumption: "x"}, "filter OUTER #2: -A OUTER -p tcp -m tcp --dport 1 -j INNER -> no match [assuming x]"},
	}
	for _, tc := range steps {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
}
