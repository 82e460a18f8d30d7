package iptablestest

import (
	"errors"
	"math"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// masq summarises Outcomes.Masqueraded for table tests.
func masq(out Outcomes) string {
	always, sometimes := out.Masqueraded()
	switch {
	case always:
		return "always"
	case sometimes:
		return "sometimes"
	}
	return "never"
}

type traceCase struct {
	name string
	dump string
	pkt  Packet
	opts TraceOptions
	// Expectations; zero values are not checked (except wantErr).
	wantVerdicts  []Verdict
	wantEndpoints []netip.AddrPort
	wantMasq      string
	wantPath      Path
	wantOutcomes  int
	wantMark      *uint32
	wantErr       error
	check         func(t *testing.T, out Outcomes)
}

func u32(v uint32) *uint32 { return &v }

func runTraceCases(t *testing.T, cases []traceCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Trace(mustParse(t, tc.dump), tc.pkt, tc.opts)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Trace: %v", err)
			}
			if tc.wantVerdicts != nil && !slices.Equal(out.Verdicts(), tc.wantVerdicts) {
				t.Errorf("verdicts = %v, want %v\n%s", out.Verdicts(), tc.wantVerdicts, out)
			}
			if tc.wantEndpoints != nil || tc.wantVerdicts != nil {
				if got := out.Endpoints(); !slices.Equal(got, tc.wantEndpoints) {
					t.Errorf("endpoints = %v, want %v\n%s", got, tc.wantEndpoints, out)
				}
			}
			if tc.wantMasq != "" && masq(out) != tc.wantMasq {
				t.Errorf("masquerade = %s, want %s\n%s", masq(out), tc.wantMasq, out)
			}
			if tc.wantOutcomes != 0 && len(out) != tc.wantOutcomes {
				t.Errorf("%d outcomes, want %d\n%s", len(out), tc.wantOutcomes, out)
			}
			for _, o := range out {
				if tc.wantPath != PathNone && o.Path != tc.wantPath {
					t.Errorf("path = %q, want %q\n%s", o.Path, tc.wantPath, out)
				}
				if tc.wantMark != nil && o.Mark != *tc.wantMark {
					t.Errorf("mark = %#x, want %#x\n%s", o.Mark, *tc.wantMark, out)
				}
			}
			var sum float64
			for _, o := range out {
				if len(o.Assumptions) == 0 {
					sum += o.Probability
				}
			}
			if sum > 0 && math.Abs(sum-1) > 1e-6 {
				t.Errorf("probabilities of assumption-free outcomes sum to %v\n%s", sum, out)
			}
			if tc.check != nil {
				tc.check(t, out)
			}
		})
	}
}

func TestTraceKubeProxyV4(t *testing.T) {
	svc1 := aps("10.180.0.1:80", "10.180.0.2:80", "10.180.0.3:80")
	runTraceCases(t, []traceCase{{
		name: "cluster IP from a pod reaches all endpoints without masquerade",
		dump: kubeDumpV4, pkt: pkt("10.0.0.2", "172.30.0.41", 80),
		wantVerdicts: []Verdict{Accept}, wantEndpoints: svc1, wantMasq: "never", wantPath: PathForward, wantOutcomes: 3,
		check: func(t *testing.T, out Outcomes) {
			for _, o := range out {
				if math.Abs(o.Probability-1.0/3) > 1e-6 {
					t.Errorf("%s: probability %v, want 1/3", o.Destination, o.Probability)
				}
			}
		},
	}, {
		name: "cluster IP from outside the cluster CIDR is masqueraded",
		dump: kubeDumpV4, pkt: pkt("192.168.0.99", "172.30.0.41", 80),
		wantVerdicts: []Verdict{Accept}, wantEndpoints: svc1, wantMasq: "always", wantMark: u32(0),
	}, {
		name: "hairpin: an endpoint reaching itself is masqueraded only on that path",
		dump: kubeDumpV4, pkt: pkt("10.180.0.2", "172.30.0.41", 80),
		wantVerdicts: []Verdict{Accept}, wantEndpoints: svc1, wantMasq: "sometimes",
		check: func(t *testing.T, out Outcomes) {
			for _, o := range out {
				if o.Masqueraded != (o.Destination.Addr() == netip.MustParseAddr("10.180.0.2")) {
					t.Errorf("%s masqueraded=%v", o.Destination, o.Masqueraded)
				}
			}
		},
	}, {
		name: "node port from outside is DNATed and masqueraded",
		dump: kubeDumpV4, pkt: pkt("203.0.113.7", "192.168.0.10", 3001),
		wantVerdicts: []Verdict{Accept}, wantEndpoints: svc1, wantMasq: "always", wantPath: PathForward,
		check: func(t *testing.T, out Outcomes) {
			if !strings.Contains(out.String(), "KUBE-NODEPORTS #1") {
				t.Errorf("trace does not go through KUBE-NODEPORTS:\n%s", out)
			}
		},
	}, {
		name: "cluster IP from the node itself (OUTPUT path) is masqueraded",
		dump: kubeDumpV4, pkt: local(pkt("192.168.0.10", "172.30.0.41", 80)),
		wantVerdicts: []Verdict{Accept}, wantEndpoints: svc1, wantMasq: "always", wantPath: PathOutput,
	}, {
		name: "service without endpoints is rejected in filter FORWARD",
		dump: kubeDumpV4, pkt: pkt("10.0.0.2", "172.30.0.42", 80),
		wantVerdicts: []Verdict{Reject}, wantOutcomes: 1,
		check: func(t *testing.T, out Outcomes) {
			if out[0].RejectWith != "icmp-port-unreachable" {
				t.Errorf("reject-with = %q", out[0].RejectWith)
			}
			last := out[0].Steps[len(out[0].Steps)-1]
			if last.Table != "filter" || last.Chain != "KUBE-SERVICES" {
				t.Errorf("last step %s", last)
			}
		},
	}, {
		name: "service without endpoints is rejected in filter OUTPUT for local clients",
		dump: kubeDumpV4, pkt: local(pkt("192.168.0.10", "172.30.0.42", 80)),
		wantVerdicts: []Verdict{Reject}, wantPath: PathOutput,
	}, {
		name: "node port without endpoints is rejected in filter INPUT",
		dump: kubeDumpV4, pkt: pkt("203.0.113.7", "192.168.0.10", 3002),
		wantVerdicts: []Verdict{Reject}, wantPath: PathInput,
	}, {
		name: "local-policy load balancer IP without local endpoints is dropped",
		dump: kubeDumpV4, pkt: pkt("203.0.113.7", "192.168.99.22", 80),
		wantVerdicts: []Verdict{Drop}, wantPath: PathForward,
	}, {
		name: "wrong port is not a service",
		dump: kubeDumpV4, pkt: pkt("10.0.0.2", "172.30.0.41", 81),
		wantVerdicts: []Verdict{Accept}, wantEndpoints: nil, wantMasq: "never", wantOutcomes: 1,
		check: func(t *testing.T, out Outcomes) {
			if out[0].Destination != netip.MustParseAddrPort("172.30.0.41:81") || out[0].DNAT != nil {
				t.Errorf("destination changed: %s", out[0])
			}
		},
	}, {
		name: "established packets skip nat and are accepted by KUBE-FORWARD",
		dump: kubeDumpV4, pkt: func() Packet { p := pkt("10.0.0.2", "10.180.0.1", 80); p.State = StateEstablished; return p }(),
		wantVerdicts: []Verdict{Accept}, wantOutcomes: 1,
		check: func(t *testing.T, out Outcomes) {
			for _, s := range out[0].Steps {
				if s.Table == "nat" {
					t.Errorf("established packet walked nat: %s", s)
				}
			}
			if !strings.Contains(out.String(), "kubernetes forwarding conntrack rule") {
				t.Errorf("not accepted by the conntrack rule:\n%s", out)
			}
		},
	}, {
		name: "session affinity with unknown recent lists explores every choice",
		dump: kubeDumpV4, pkt: pkt("10.0.0.2", "172.30.0.43", 80),
		wantVerdicts: []Verdict{Accept}, wantEndpoints: aps("10.180.0.4:8080", "10.180.0.5:8080"), wantOutcomes: 4,
		check: func(t *testing.T, out Outcomes) {
			if len(out[0].Assumptions) != 1 || !strings.Contains(out[0].Assumptions[0], "holds 10.0.0.2") {
				t.Errorf("first outcome assumptions: %q", out[0].Assumptions)
			}
		},
	}, {
		name: "session affinity with a known recent entry is deterministic",
		dump: kubeDumpV4, pkt: pkt("10.0.0.2", "172.30.0.43", 80),
		opts:         TraceOptions{Recent: map[string][]netip.Addr{"KUBE-SEP-I77PXRDZVX7PMWMN": {podIP}}},
		wantVerdicts: []Verdict{Accept}, wantEndpoints: aps("10.180.0.5:8080"), wantOutcomes: 1,
	}, {
		name: "session affinity without entries balances",
		dump: kubeDumpV4, pkt: pkt("10.0.0.2", "172.30.0.43", 80),
		opts:         TraceOptions{Recent: map[string][]netip.Addr{}},
		wantVerdicts: []Verdict{Accept}, wantEndpoints: aps("10.180.0.4:8080", "10.180.0.5:8080"), wantOutcomes: 2,
	}, {
		name: "a locally generated packet to the node's own address goes back in through lo",
		dump: kubeDumpV4, pkt: local(pkt("192.168.0.10", "192.168.0.10", 22)),
		wantVerdicts: []Verdict{Accept}, wantPath: PathLocal,
		check: func(t *testing.T, out Outcomes) {
			if !strings.Contains(out.String(), "filter INPUT") {
				t.Errorf("INPUT not traversed:\n%s", out)
			}
		},
	}, {
		name: "the step limit stops the walk",
		dump: kubeDumpV4, pkt: pkt("10.0.0.2", "172.30.0.41", 80), opts: TraceOptions{MaxSteps: 5},
		wantErr: ErrLimit,
	}, {
		name: "the outcome limit stops the walk",
		dump: kubeDumpV4, pkt: pkt("10.0.0.2", "172.30.0.41", 80), opts: TraceOptions{MaxOutcomes: 2},
		wantErr: ErrLimit,
	}, {
		name: "an IPv6 packet in an IPv4 dump is refused",
		dump: kubeDumpV4, pkt: pkt("fd00::1", "fd00::2", 80),
		wantErr: ErrFamily,
	}, {
		name: "a packet without destination port is refused",
		dump: kubeDumpV4, pkt: pkt("10.0.0.2", "172.30.0.41", 0),
		wantErr: ErrInvalidPacket,
	}})
}

func TestTraceIPv6(t *testing.T) {
	runTraceCases(t, []traceCase{{
		name: "cluster IP balances over both endpoints",
		dump: kubeDumpV6, pkt: pkt("fd00:10::9", "fd00:30::41", 80),
		wantVerdicts: []Verdict{Accept}, wantEndpoints: aps("[fd00:10::1]:80", "[fd00:10::2]:80"), wantMasq: "never",
	}, {
		name: "off-cluster source is masqueraded",
		dump: kubeDumpV6, pkt: pkt("2001:db8::1", "fd00:30::41", 80),
		wantVerdicts: []Verdict{Accept}, wantEndpoints: aps("[fd00:10::1]:80", "[fd00:10::2]:80"), wantMasq: "always",
	}, {
		name: "no endpoints rejects with icmp6",
		dump: kubeDumpV6, pkt: local(pkt("fd00:1::10", "fd00:30::42", 80)),
		wantVerdicts: []Verdict{Reject},
		check: func(t *testing.T, out Outcomes) {
			if out[0].RejectWith != "icmp6-port-unreachable" {
				t.Errorf("reject-with %q", out[0].RejectWith)
			}
		},
	}, {
		name: "non-contiguous IPv6 mask matches ::5/::f",
		dump: kubeDumpV6, pkt: pkt("fd00:10::9", "fd00:99::1235", 80),
		wantVerdicts: []Verdict{Drop},
	}, {
		name: "non-contiguous IPv6 mask does not match ::6",
		dump: kubeDumpV6, pkt: pkt("fd00:10::9", "fd00:99::1236", 80),
		wantVerdicts: []Verdict{Accept},
	}, {
		name: "an IPv4 packet in an IPv6 dump is refused",
		dump: kubeDumpV6, pkt: pkt("10.0.0.2", "172.30.0.41", 80),
		wantErr: ErrFamily,
	}})
}

func TestTraceIPSetsAndMasks(t *testing.T) {
	sets, err := ParseIPSetSave(ipsetSave)
	if err != nil {
		t.Fatal(err)
	}
	withSets := TraceOptions{IPSets: sets}
	runTraceCases(t, []traceCase{{
		name: "ipset dispatch reaches the service",
		dump: ipsetDump, pkt: pkt("10.0.0.2", "172.30.0.1", 443), opts: withSets,
		wantVerdicts: []Verdict{Accept}, wantEndpoints: aps("10.180.0.9:8443"),
	}, {
		name: "ipset dispatch checks the protocol of the port dimension",
		dump: ipsetDump, pkt: func() Packet { p := pkt("10.0.0.2", "172.30.0.10", 53); p.Protocol = UDP; return p }(), opts: withSets,
		wantVerdicts: []Verdict{Accept}, wantEndpoints: nil, wantOutcomes: 1,
		check: func(t *testing.T, out Outcomes) {
			// The UDP entry matches; the only DNAT rule needs -p tcp.
			if out[0].DNAT != nil {
				t.Errorf("UDP packet DNATed by a TCP rule: %s", out[0])
			}
		},
	}, {
		name: "ipset miss leaves the packet alone",
		dump: ipsetDump, pkt: pkt("10.0.0.2", "172.30.0.1", 80), opts: withSets,
		wantVerdicts: []Verdict{Accept}, wantEndpoints: nil,
	}, {
		name: "hash:net nomatch hole drops the source",
		dump: ipsetDump, pkt: pkt("10.9.1.1", "10.180.0.1", 80), opts: withSets,
		wantVerdicts: []Verdict{Drop},
	}, {
		name: "bitmap:port rejects the blocked port",
		dump: ipsetDump, pkt: pkt("192.168.0.5", "10.180.0.1", 9999), opts: withSets,
		wantVerdicts: []Verdict{Reject},
	}, {
		name: "a set that was not provided is an error",
		dump: ipsetDump, pkt: pkt("10.0.0.2", "172.30.0.1", 443),
		wantErr: ErrNoSet,
	}, {
		name: "non-contiguous mask dispatch finds the bucket",
		dump: maskDispatchDump, pkt: pkt("10.0.0.2", "172.30.0.41", 80),
		wantVerdicts: []Verdict{Accept}, wantEndpoints: aps("10.180.0.1:80"), wantMark: u32(0),
		check: func(t *testing.T, out Outcomes) {
			if !strings.Contains(out.String(), "goto BUCKET-1") {
				t.Errorf("did not dispatch to BUCKET-1:\n%s", out)
			}
		},
	}, {
		name: "goto: a bucket miss returns past the chain that did the goto",
		dump: maskDispatchDump, pkt: pkt("10.0.0.2", "172.30.0.45", 80),
		wantVerdicts: []Verdict{Accept}, wantEndpoints: nil, wantMark: u32(1),
		check: func(t *testing.T, out Outcomes) {
			s := out.String()
			if strings.Contains(s, "BUCKET-2") || !strings.Contains(s, "MARK 0x0 -> 0x1") {
				t.Errorf("goto did not return to PREROUTING:\n%s", s)
			}
		},
	}})
}
