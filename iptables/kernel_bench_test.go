package iptables

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
)

// Synthetic ruleset size for the benchmarks: 10,000 chains, 100,000 rules.
const (
	benchServices  = 1000
	benchEndpoints = 9 // chains: 1000 KUBE-SVC + 9000 KUBE-SEP = 10,000
	benchRules     = 100000
)

var (
	benchPayloadOnce sync.Once
	benchPayloadData []byte
)

// benchPayload returns a kube-proxy-shaped iptables-restore payload in
// iptables-save canonical form: in nat, per service a KUBE-SERVICES rule
// and a KUBE-SVC chain balancing over KUBE-SEP chains (masquerade mark +
// DNAT); in filter, enough firewall/REJECT rules to total benchRules.
func benchPayload() []byte {
	benchPayloadOnce.Do(func() {
		var b bytes.Buffer
		rules := 0
		b.WriteString("*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n")
		for s := 0; s < benchServices; s++ {
			fmt.Fprintf(&b, ":KUBE-SVC-%012d - [0:0]\n", s)
			for e := 0; e < benchEndpoints; e++ {
				fmt.Fprintf(&b, ":KUBE-SEP-%011d%d - [0:0]\n", s, e)
			}
		}
		b.WriteString("-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n")
		rules++
		for s := 0; s < benchServices; s++ {
			fmt.Fprintf(&b, "-A KUBE-SERVICES -d 172.30.%d.%d/32 -p tcp -m comment --comment \"ns/svc%d:http cluster IP\" -m tcp --dport 80 -j KUBE-SVC-%012d\n",
				s/256, s%256, s, s)
			rules++
			for e := 0; e < benchEndpoints; e++ {
				ip := fmt.Sprintf("10.%d.%d.%d", 1+s/256, s%256, e+1)
				if e < benchEndpoints-1 {
					fmt.Fprintf(&b, "-A KUBE-SVC-%012d -m comment --comment \"ns/svc%d:http -> %s:8080\" -m statistic --mode random --probability %s -j KUBE-SEP-%011d%d\n",
						s, s, ip, mustProbability(1.0/float64(benchEndpoints-e)), s, e)
				} else {
					fmt.Fprintf(&b, "-A KUBE-SVC-%012d -m comment --comment \"ns/svc%d:http -> %s:8080\" -j KUBE-SEP-%011d%d\n", s, s, ip, s, e)
				}
				fmt.Fprintf(&b, "-A KUBE-SEP-%011d%d -s %s/32 -m comment --comment \"ns/svc%d:http\" -j KUBE-MARK-MASQ\n", s, e, ip, s)
				fmt.Fprintf(&b, "-A KUBE-SEP-%011d%d -p tcp -m comment --comment \"ns/svc%d:http\" -m tcp -j DNAT --to-destination %s:8080\n", s, e, s, ip)
				rules += 3
			}
		}
		b.WriteString("COMMIT\n*filter\n:KUBE-SERVICES - [0:0]\n:KUBE-EXTERNAL-SERVICES - [0:0]\n")
		for i := 0; rules < benchRules; i++ {
			chain := "KUBE-SERVICES"
			if i%2 == 1 {
				chain = "KUBE-EXTERNAL-SERVICES"
			}
			fmt.Fprintf(&b, "-A %s -d 172.31.%d.%d/32 -p tcp -m comment --comment \"ns/nosvc%d:http has no endpoints\" -m tcp --dport %d -j REJECT --reject-with icmp-port-unreachable\n",
				chain, (i/256)%256, i%256, i, 1024+i%50000)
			rules++
		}
		b.WriteString("COMMIT\n")
		benchPayloadData = b.Bytes()
	})
	return benchPayloadData
}

// mustProbability formats a probability the way iptables-save prints it.
func mustProbability(p float64) string {
	s, err := canonicalProbability(fmt.Sprint(p))
	if err != nil {
		panic(err)
	}
	return s
}

func TestBenchPayloadShape(t *testing.T) {
	if testing.Short() {
		t.Skip("restores 100k rules into the Fake")
	}
	p := benchPayload()
	if got := countRules(p); got != benchRules {
		t.Errorf("payload has %d rules, want %d", got, benchRules)
	}
	f := &Fake{}
	mustRestore(t, f, IPv4, string(p))
	if got := len(f.Chains(IPv4, TableNAT)) + len(f.Chains(IPv4, TableFilter)); got != 10002+2 {
		t.Errorf("payload has %d user chains", got)
	}
	// The payload is canonical: saving it back changes nothing but the
	// added built-in chains.
	if got := countRules([]byte(mustSave(t, f, IPv4))); got != benchRules {
		t.Errorf("saved %d rules", got)
	}
}

// benchKernel returns an ExecKernel in a fresh namespace, with the
// benchmark payload restored once when loaded is set.
func benchKernel(b *testing.B, backend Backend, loaded bool) *ExecKernel {
	b.Helper()
	requireBackend(b, backend)
	k := newTestExec(b, backend, newTestNetns(b), 5)
	if loaded {
		if err := k.Restore(context.Background(), IPv4, benchPayload(), RestoreOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	return k
}

// BenchmarkKernelRestore restores the 10k-chain/100k-rule payload with one
// iptables-restore call. The first iteration creates everything; later
// ones re-declare (flush) and refill every chain, which is what a full
// resync costs.
func BenchmarkKernelRestore(b *testing.B) {
	payload := benchPayload()
	for _, backend := range backends {
		b.Run(string(backend), func(b *testing.B) {
			requireRoot(b)
			k := benchKernel(b, backend, false)
			b.SetBytes(int64(len(payload)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := k.Restore(context.Background(), IPv4, payload, RestoreOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/restore")
		})
	}
}

// BenchmarkKernelSave compares the two ways of saving nat and filter from
// the loaded 100k-rule ruleset: what Save does (one iptables-save of
// everything, cut into tables) and one "iptables-save -t TABLE" per table.
func BenchmarkKernelSave(b *testing.B) {
	for _, backend := range backends {
		b.Run(string(backend), func(b *testing.B) {
			requireRoot(b)
			k := benchKernel(b, backend, true)
			ctx := context.Background()
			for _, mode := range []struct {
				name string
				save func() ([]byte, error)
			}{
				{"one-exec", func() ([]byte, error) { return k.Save(ctx, IPv4, TableNAT, TableFilter) }},
				{"exec-per-table", func() ([]byte, error) {
					nat, err := k.Save(ctx, IPv4, TableNAT)
					if err != nil {
						return nil, err
					}
					filter, err := k.Save(ctx, IPv4, TableFilter)
					return append(nat, filter...), err
				}},
			} {
				b.Run(mode.name, func(b *testing.B) {
					var n int
					for i := 0; i < b.N; i++ {
						out, err := mode.save()
						if err != nil {
							b.Fatal(err)
						}
						n = countRules(out)
					}
					if n != benchRules {
						b.Fatalf("saved %d rules, want %d", n, benchRules)
					}
					b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/save")
				})
			}
		})
	}
}

// BenchmarkFakeRestore measures the Fake on the same payload, so tests
// know what a full sync against it costs.
func BenchmarkFakeRestore(b *testing.B) {
	payload := benchPayload()
	f := &Fake{}
	b.SetBytes(int64(len(payload)))
	for i := 0; i < b.N; i++ {
		if err := f.Restore(context.Background(), IPv4, payload, RestoreOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFakeSave measures rendering the loaded Fake.
func BenchmarkFakeSave(b *testing.B) {
	f := &Fake{}
	mustRestore(b, f, IPv4, string(benchPayload()))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := f.Save(context.Background(), IPv4, TableNAT, TableFilter); err != nil {
			b.Fatal(err)
		}
	}
}
