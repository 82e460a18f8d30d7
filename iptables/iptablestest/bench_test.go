package iptablestest

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// syntheticDump renders a kube-proxy-shaped nat table with n services of
// two endpoints each: 1 KUBE-SERVICES rule, 3 KUBE-SVC rules and 2 rules
// per KUBE-SEP chain, i.e. about 10 lines per service.
func syntheticDump(n int) string {
	var b strings.Builder
	b.WriteString("*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, ":KUBE-SVC-%016d - [0:0]\n:KUBE-SEP-%016dA - [0:0]\n:KUBE-SEP-%016dB - [0:0]\n", i, i, i)
	}
	b.WriteString("-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n")
	b.WriteString("-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n")
	for i := 0; i < n; i++ {
		ip := fmt.Sprintf("172.%d.%d.%d", 16+i>>16, (i>>8)&255, i&255)
		fmt.Fprintf(&b, "-A KUBE-SERVICES -d %s/32 -p tcp -m comment --comment \"ns/svc%d:p80 cluster IP\" -m tcp --dport 80 -j KUBE-SVC-%016d\n", ip, i, i)
	}
	for i := 0; i < n; i++ {
		ip := fmt.Sprintf("172.%d.%d.%d", 16+i>>16, (i>>8)&255, i&255)
		fmt.Fprintf(&b, "-A KUBE-SVC-%016d ! -s 10.0.0.0/8 -d %s/32 -p tcp -m comment --comment \"ns/svc%d:p80 cluster IP\" -m tcp --dport 80 -j KUBE-MARK-MASQ\n", i, ip, i)
		fmt.Fprintf(&b, "-A KUBE-SVC-%016d -m comment --comment \"ns/svc%d:p80 -> 10.1.0.1:80\" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-%016dA\n", i, i, i)
		fmt.Fprintf(&b, "-A KUBE-SVC-%016d -m comment --comment \"ns/svc%d:p80 -> 10.1.0.2:80\" -j KUBE-SEP-%016dB\n", i, i, i)
		for _, e := range []string{"A", "B"} {
			fmt.Fprintf(&b, "-A KUBE-SEP-%016d%s -s 10.1.0.1/32 -m comment --comment ns/svc%d:p80 -j KUBE-MARK-MASQ\n", i, e, i)
			fmt.Fprintf(&b, "-A KUBE-SEP-%016d%s -p tcp -m comment --comment ns/svc%d:p80 -m tcp -j DNAT --to-destination 10.1.0.1:80\n", i, e, i)
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// BenchmarkParseDump parses a ~100k-line dump.
func BenchmarkParseDump(b *testing.B) {
	text := syntheticDump(10_000)
	b.SetBytes(int64(len(text)))
	b.ReportMetric(float64(strings.Count(text, "\n")), "lines")
	b.ResetTimer()
	for b.Loop() {
		if _, err := ParseDump(text); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTrace traces a packet to the last service of a ~100k-line dump,
// the worst case for kube-proxy's linear KUBE-SERVICES chain.
func BenchmarkTrace(b *testing.B) {
	const n = 10_000
	d, err := ParseDump(syntheticDump(n))
	if err != nil {
		b.Fatal(err)
	}
	i := n - 1
	p := pkt("10.0.0.2", fmt.Sprintf("172.%d.%d.%d", 16+i>>16, (i>>8)&255, i&255), 80)
	for b.Loop() {
		out, err := Trace(d, p, TraceOptions{})
		if err != nil || len(out.Endpoints()) != 1 || len(out) != 2 {
			b.Fatalf("%v %s", err, out)
		}
	}
}

func TestSyntheticDumpSize(t *testing.T) {
	if testing.Short() {
		t.Skip("large dump")
	}
	text := syntheticDump(10_000)
	if lines := strings.Count(text, "\n"); lines < 100_000 {
		t.Fatalf("synthetic dump has %d lines, want >= 100k", lines)
	}
	d, err := ParseDump(text)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Trace(d, pkt("10.0.0.2", "172.16.39.15", 80), TraceOptions{})
	if err != nil || len(out) != 2 || out[0].Destination != netip.MustParseAddrPort("10.1.0.1:80") {
		t.Fatalf("%v\n%s", err, out)
	}
}
