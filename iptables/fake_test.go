package iptables

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite golden files under testdata/kernel")

// kubeProxyPayload is a small kube-proxy-shaped ruleset in the form a
// renderer writes it (not canonical), used by several tests.
const kubeProxyPayload = `*filter
:KUBE-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
-A KUBE-SERVICES -m comment --comment "ns/nosvc:p has no endpoints" -m tcp -p tcp -d 172.30.0.9 --dport 80 -j REJECT
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SVC-AAAA - [0:0]
:KUBE-SEP-BBBB - [0:0]
:KUBE-SEP-CCCC - [0:0]
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-SERVICES -m comment --comment "ns/svc:p cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-AAAA
-A KUBE-SVC-AAAA -m comment --comment "ns/svc:p -> 10.1.0.2:8080" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-BBBB
-A KUBE-SVC-AAAA -m comment --comment "ns/svc:p -> 10.1.0.3:8080" -j KUBE-SEP-CCCC
-A KUBE-SEP-BBBB -m comment --comment ns/svc:p -s 10.1.0.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-BBBB -m comment --comment ns/svc:p -m tcp -p tcp -j DNAT --to-destination 10.1.0.2:8080
-A KUBE-SEP-CCCC -m comment --comment ns/svc:p -s 10.1.0.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-CCCC -m comment --comment ns/svc:p -m tcp -p tcp -j DNAT --to-destination 10.1.0.3:8080
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
COMMIT
`

// mustRestore restores payload into k or fails the test.
func mustRestore(t testing.TB, k Kernel, family Family, payload string) {
	t.Helper()
	if err := k.Restore(context.Background(), family, []byte(payload), RestoreOptions{}); err != nil {
		t.Fatalf("restore: %v\npayload:\n%s", err, payload)
	}
}

// mustSave saves tables from k or fails the test.
func mustSave(t testing.TB, k Kernel, family Family, tables ...Table) string {
	t.Helper()
	b, err := k.Save(context.Background(), family, tables...)
	if err != nil {
		t.Fatalf("save: %v", err)
	}
	return string(b)
}

// checkGolden compares got with testdata/kernel/name, rewriting it with -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "kernel", name)
	if *updateGolden {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if got != string(want) {
		t.Errorf("%s mismatch\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestFakeRestoreSaveGoldenAndRoundTrip(t *testing.T) {
	f := &Fake{}
	mustRestore(t, f, IPv4, kubeProxyPayload)
	checkGolden(t, "fake_dump.golden", f.Dump())

	// What Save prints must restore to the same state, in a fresh Fake
	// and (without --noflush, which would append the built-in chains'
	// rules a second time, as the kernel does) on top of the existing one.
	saved := mustSave(t, f, IPv4)
	g := &Fake{}
	mustRestore(t, g, IPv4, saved)
	if err := f.Restore(context.Background(), IPv4, []byte(saved), RestoreOptions{Flush: true}); err != nil {
		t.Fatal(err)
	}
	if a, b := mustSave(t, g, IPv4), mustSave(t, f, IPv4); a != saved || b != saved {
		t.Errorf("round trip changed the ruleset:\n%s\nvs\n%s\nvs\n%s", saved, a, b)
	}
}

func TestFakeSaveNamedTables(t *testing.T) {
	f := &Fake{}
	if got := mustSave(t, f, IPv4); got != "" {
		t.Errorf("empty fake saved %q", got)
	}
	want := "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n"
	if got := mustSave(t, f, IPv4, TableNAT); got != want {
		t.Errorf("Save(nat) of untouched table:\n%s", got)
	}
	if _, err := f.Save(context.Background(), IPv4, "bogus"); err == nil {
		t.Error("Save of unknown table succeeded")
	}
}

func TestFakeBlockIsAtomic(t *testing.T) {
	f := &Fake{}
	mustRestore(t, f, IPv4, kubeProxyPayload)
	before := f.Dump()

	bad := "*nat\n:KUBE-SVC-AAAA - [0:0]\n-A KUBE-SVC-AAAA -j KUBE-SEP-BBBB\n-A KUBE-SVC-AAAA -j KUBE-NOPE\nCOMMIT\n"
	err := f.Restore(context.Background(), IPv4, []byte(bad), RestoreOptions{})
	var ee *ExecError
	if !errors.As(err, &ee) || !errors.Is(err, ErrInvalidRuleset) {
		t.Fatalf("want classified ExecError, got %v", err)
	}
	if ee.Line != 4 || ee.LineText != "-A KUBE-SVC-AAAA -j KUBE-NOPE" {
		t.Errorf("blamed line %d %q, want 4", ee.Line, ee.LineText)
	}
	if after := f.Dump(); after != before {
		t.Errorf("failed restore changed state:\n%s", after)
	}
}

func TestFakeCommitsPerTable(t *testing.T) {
	// Like both iptables variants: blocks before the failing one stay.
	f := &Fake{}
	payload := "*nat\n:T1 - [0:0]\nCOMMIT\n*filter\n:T2 - [0:0]\n-A T2 -j NOPE\nCOMMIT\n"
	err := f.Restore(context.Background(), IPv4, []byte(payload), RestoreOptions{})
	if !errors.Is(err, ErrInvalidRuleset) {
		t.Fatalf("want ErrInvalidRuleset, got %v", err)
	}
	if _, ok := f.Rules(IPv4, TableNAT, "T1"); !ok {
		t.Error("nat block before the failure was not committed")
	}
	if _, ok := f.Rules(IPv4, TableFilter, "T2"); ok {
		t.Error("failing filter block was committed")
	}
}

func TestFakeChainDeletion(t *testing.T) {
	ctx := context.Background()
	f := &Fake{}
	mustRestore(t, f, IPv4, "*nat\n:A - [0:0]\n:B - [0:0]\n-A A -j B\n-A B -j RETURN\nCOMMIT\n")
	for _, c := range []struct{ payload, why string }{
		{"*nat\n-X B\nCOMMIT\n", "B is referenced by A and not empty"},
		{"*nat\n-F B\n-X B\nCOMMIT\n", "B is still referenced by A"},
		{"*nat\n-X A\nCOMMIT\n", "A is not empty"},
		{"*nat\n-X NOPE\nCOMMIT\n", "no such chain"},
		{"*nat\n-X PREROUTING\nCOMMIT\n", "built-in chain"},
		{"*nat\n-X\nCOMMIT\n", "delete-all with non-empty chains"},
	} {
		if err := f.Restore(ctx, IPv4, []byte(c.payload), RestoreOptions{}); !errors.Is(err, ErrInvalidRuleset) {
			t.Errorf("%s: want ErrInvalidRuleset, got %v", c.why, err)
		}
	}
	// Declaring A flushes it, dropping its reference to B, so both can go
	// in one block: the pattern the proxier uses for stale chains.
	mustRestore(t, f, IPv4, "*nat\n:A - [0:0]\n:B - [0:0]\n-X A\n-X B\nCOMMIT\n")
	if _, ok := f.Rules(IPv4, TableNAT, "B"); ok {
		t.Error("B survived")
	}
	// Kernel-semantics DeleteChain: missing is fine, referenced is not.
	if err := f.DeleteChain(ctx, IPv4, TableNAT, "NOPE"); err != nil {
		t.Errorf("DeleteChain(missing) = %v", err)
	}
	mustRestore(t, f, IPv4, "*nat\n:C - [0:0]\n:D - [0:0]\n-A C -j D\nCOMMIT\n")
	if err := f.DeleteChain(ctx, IPv4, TableNAT, "D"); !errors.Is(err, ErrInvalidRuleset) {
		t.Errorf("DeleteChain(referenced) = %v", err)
	}
	if err := f.FlushChain(ctx, IPv4, TableNAT, "C"); err != nil {
		t.Fatal(err)
	}
	if err := f.DeleteChain(ctx, IPv4, TableNAT, "D"); err != nil {
		t.Errorf("DeleteChain after flush = %v", err)
	}
	if err := f.FlushChain(ctx, IPv4, TableNAT, "NOPE"); !errors.Is(err, ErrChainNotFound) {
		t.Errorf("FlushChain(missing) = %v", err)
	}
}

func TestFakeRejectsLikeTheKernel(t *testing.T) {
	cases := []struct {
		name    string
		payload string
		line    int
	}{
		{"jump to missing chain", "*nat\n:A - [0:0]\n-A A -j B\n:B - [0:0]\nCOMMIT\n", 3},
		{"unknown table", "*nosuch\n:A - [0:0]\nCOMMIT\n", 1},
		{"rule for undeclared chain", "*nat\n-A NOPE -j RETURN\nCOMMIT\n", 2},
		{"malformed line", "*nat\n:A - [0:0]\ngarbage here\nCOMMIT\n", 3},
		{"unknown option position", "*nat\n:A - [0:0]\n-A A -j RETURN\n-A A --dport 80\nCOMMIT\n", 4},
		{"missing COMMIT", "*nat\n:A - [0:0]\n-A A -j RETURN\n", 4},
		{"line outside table", "-A A -j RETURN\n", 1},
		{"DROP in nat", "*nat\n:A - [0:0]\n-A A -j DROP\nCOMMIT\n", 3},
		// The kernel checks tables and hooks at commit, on the final table.
		{"REJECT outside filter", "*mangle\n:A - [0:0]\n-A A -j REJECT\nCOMMIT\n", 4},
		{"DNAT in filter", "*filter\n:A - [0:0]\n-A A -j DNAT --to-destination 1.1.1.1\nCOMMIT\n", 4},
		{"MASQUERADE reachable from OUTPUT", "*nat\n:A - [0:0]\n-A A -j MASQUERADE\n-A POSTROUTING -j A\n-A OUTPUT -j A\nCOMMIT\n", 6},
		{"DNAT reachable from POSTROUTING", "*nat\n:A - [0:0]\n-A A -j DNAT --to-destination 1.1.1.1\n-A POSTROUTING -j A\nCOMMIT\n", 5},
		{"loop reachable from a hook", "*nat\n:A - [0:0]\n:B - [0:0]\n-A A -j B\n-A B -j A\n-A PREROUTING -j A\nCOMMIT\n", 7},
		{"insert index too big", "*filter\n:A - [0:0]\n-A A -j ACCEPT\n-I A 3 -j DROP\nCOMMIT\n", 4},
		{"delete missing rule", "*filter\n:A - [0:0]\n-D A -j ACCEPT\nCOMMIT\n", 3},
		{"delete index too big", "*filter\n:A - [0:0]\n-D A 1\nCOMMIT\n", 3},
		{"policy on user chain", "*filter\n:A ACCEPT [0:0]\nCOMMIT\n", 2},
		{"chain name too long", "*filter\n:" + strings.Repeat("X", 29) + " - [0:0]\nCOMMIT\n", 2},
		{"-t inside payload", "*filter\n-t nat -A INPUT -j ACCEPT\nCOMMIT\n", 2},
		{"new table without COMMIT", "*filter\n*nat\nCOMMIT\n", 2},
		{"DNAT port without protocol", "*nat\n:A - [0:0]\n-A A -j DNAT --to-destination 1.1.1.1:80\nCOMMIT\n", 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &Fake{}
			err := f.Restore(context.Background(), IPv4, []byte(c.payload), RestoreOptions{})
			var ee *ExecError
			if !errors.As(err, &ee) || !errors.Is(err, ErrInvalidRuleset) {
				t.Fatalf("want ErrInvalidRuleset ExecError, got %v", err)
			}
			if ee.Line != c.line {
				t.Errorf("line %d, want %d (%v)", ee.Line, c.line, err)
			}
			if got := f.Dump(); strings.Contains(got, ":A ") {
				t.Errorf("state changed:\n%s", got)
			}
		})
	}
	// Loops and restricted targets in chains no hook reaches are accepted,
	// as by the kernel, and so is a misplaced target that is flushed again
	// before COMMIT (the kernel never sees it; verified on nft).
	f := &Fake{}
	mustRestore(t, f, IPv4, "*nat\n:A - [0:0]\n:B - [0:0]\n:M - [0:0]\n-A A -j B\n-A B -j A\n-A M -j MASQUERADE\nCOMMIT\n")
	mustRestore(t, f, IPv4, "*filter\n:F - [0:0]\n-A F -j MASQUERADE\n-F F\nCOMMIT\n")
}

func TestFakeRuleCommands(t *testing.T) {
	f := &Fake{}
	mustRestore(t, f, IPv4, `*nat
:A - [0:0]
-A A -j RETURN
-A A -j ACCEPT
-A A -j MARK --set-xmark 0x2/0x2
-I A 2 -j MARK --set-xmark 0x1/0x1
-I A -p udp
-D A 4
-R A 1 -p tcp
-A A -p tcp -d 10.0.0.1
-D A -d 10.0.0.1/32 -p tcp
COMMIT
`)
	got, _ := f.Rules(IPv4, TableNAT, "A")
	want := []string{"-p tcp", "-j RETURN", "-j MARK --set-xmark 0x1/0x1", "-j MARK --set-xmark 0x2/0x2"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("rules = %q, want %q", got, want)
	}
}

func TestFakeNoflushDeclarationFlushesUserChainsOnly(t *testing.T) {
	f := &Fake{}
	mustRestore(t, f, IPv4, "*filter\n:INPUT DROP [0:0]\n:T2 - [0:0]\n:T3 - [0:0]\n-A INPUT -j T2\n-A T3 -j ACCEPT\nCOMMIT\n")
	mustRestore(t, f, IPv4, "*filter\n:T3 - [0:0]\n:INPUT ACCEPT [5:5]\nCOMMIT\n")
	want := "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:T2 - [0:0]\n:T3 - [0:0]\n-A INPUT -j T2\nCOMMIT\n"
	if got := mustSave(t, f, IPv4, TableFilter); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestFakeFlushModePerBackend(t *testing.T) {
	for _, c := range []struct {
		backend Backend
		policy  string
	}{{BackendNFT, "ACCEPT"}, {BackendLegacy, "DROP"}} {
		f := NewFake(FakeOptions{Backend: c.backend})
		mustRestore(t, f, IPv4, "*filter\n:INPUT DROP [0:0]\n:T2 - [0:0]\n-A INPUT -j T2\nCOMMIT\n")
		if err := f.Restore(context.Background(), IPv4, []byte("*filter\n:T4 - [0:0]\n-A FORWARD -j T4\nCOMMIT\n"), RestoreOptions{Flush: true}); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("*filter\n:INPUT %s [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:T4 - [0:0]\n-A FORWARD -j T4\nCOMMIT\n", c.policy)
		if got := mustSave(t, f, IPv4, TableFilter); got != want {
			t.Errorf("%s: got\n%s\nwant\n%s", c.backend, got, want)
		}
	}
}

func TestFakeTestModeValidatesWithoutCommitting(t *testing.T) {
	f := &Fake{}
	ctx := context.Background()
	if err := f.Restore(ctx, IPv4, []byte(kubeProxyPayload), RestoreOptions{Test: true}); err != nil {
		t.Fatal(err)
	}
	if d := f.Dump(); d != "" {
		t.Errorf("--test committed:\n%s", d)
	}
	if err := f.Restore(ctx, IPv4, []byte("*nat\n-A NOPE -j RETURN\nCOMMIT\n"), RestoreOptions{Test: true}); !errors.Is(err, ErrInvalidRuleset) {
		t.Errorf("--test accepted a bad payload: %v", err)
	}
}

func TestFakeJumps(t *testing.T) {
	ctx := context.Background()
	f := &Fake{}
	if existed, err := f.EnsureChain(ctx, IPv4, TableNAT, "KUBE-SERVICES"); err != nil || existed {
		t.Fatalf("EnsureChain = %v, %v", existed, err)
	}
	if existed, err := f.EnsureChain(ctx, IPv4, TableNAT, "KUBE-SERVICES"); err != nil || !existed {
		t.Fatalf("second EnsureChain = %v, %v", existed, err)
	}
	mustRestore(t, f, IPv4, "*nat\n-A OUTPUT -j RETURN\nCOMMIT\n")
	j := Jump{Table: TableNAT, From: ChainOutput, To: "KUBE-SERVICES", Comment: "kubernetes service portals",
		Match: []string{"-m", "addrtype", "--dst-type", "LOCAL"}}
	for i, wantExisted := range []bool{false, true, true} {
		existed, err := f.EnsureJump(ctx, IPv4, j)
		if err != nil || existed != wantExisted {
			t.Fatalf("EnsureJump #%d = %v, %v", i, existed, err)
		}
	}
	rules, _ := f.Rules(IPv4, TableNAT, ChainOutput)
	want := []string{`-m addrtype --dst-type LOCAL -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`, "-j RETURN"}
	if strings.Join(rules, "|") != strings.Join(want, "|") {
		t.Errorf("OUTPUT = %q", rules)
	}
	app := Jump{Table: TableNAT, From: ChainPostrouting, To: "KUBE-SERVICES", Position: Append}
	mustRestore(t, f, IPv4, "*nat\n-A POSTROUTING -j RETURN\nCOMMIT\n")
	if _, err := f.EnsureJump(ctx, IPv4, app); err != nil {
		t.Fatal(err)
	}
	if rules, _ := f.Rules(IPv4, TableNAT, ChainPostrouting); rules[1] != "-j KUBE-SERVICES" {
		t.Errorf("append put the jump at %q", rules)
	}
	if err := f.DeleteChain(ctx, IPv4, TableNAT, "KUBE-SERVICES"); !errors.Is(err, ErrInvalidRuleset) {
		t.Errorf("DeleteChain of a jumped-to chain = %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := f.DeleteJump(ctx, IPv4, j); err != nil {
			t.Fatal(err)
		}
		if err := f.DeleteJump(ctx, IPv4, app); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.DeleteChain(ctx, IPv4, TableNAT, "KUBE-SERVICES"); err != nil {
		t.Errorf("DeleteChain after removing jumps = %v", err)
	}
	if err := f.DeleteJump(ctx, IPv4, j); err != nil {
		t.Errorf("DeleteJump to a missing chain = %v", err)
	}
	if _, err := f.EnsureJump(ctx, IPv4, Jump{Table: TableNAT, From: "NOPE", To: "KUBE-X"}); err == nil {
		t.Error("EnsureJump from a missing chain succeeded")
	}
	if _, err := f.EnsureJump(ctx, IPv4, Jump{Table: TableNAT, From: ChainOutput, To: "KUBE-MISSING"}); !errors.Is(err, ErrInvalidRuleset) {
		t.Errorf("EnsureJump to a missing chain = %v", err)
	}
}

func TestFakeFaultInjectionAndStats(t *testing.T) {
	ctx := context.Background()
	f := &Fake{}
	lockErr := &ExecError{Op: OpRestore, Cmd: "iptables-restore", ExitCode: 4, kind: ErrLockHeld}
	f.FailNext(OpRestore, lockErr)
	if err := f.Restore(ctx, IPv4, []byte(kubeProxyPayload), RestoreOptions{}); !errors.Is(err, ErrLockHeld) {
		t.Fatalf("FailNext not honoured: %v", err)
	}
	if d := f.Dump(); d != "" {
		t.Fatalf("injected failure changed state:\n%s", d)
	}
	mustRestore(t, f, IPv4, kubeProxyPayload)

	var seen []string
	f.Hook = func(op string, fam Family, payload []byte) error {
		seen = append(seen, fmt.Sprintf("%s/%s/%d", op, fam, len(payload)))
		if op == OpSave && fam == IPv6 {
			return errors.New("boom")
		}
		return nil
	}
	if _, err := f.Save(ctx, IPv6); err == nil {
		t.Error("Hook error not returned")
	}
	mustSave(t, f, IPv4, TableNAT)
	if want := "save/IPv6/0 save/IPv4/0"; strings.Join(seen, " ") != want {
		t.Errorf("hook saw %q, want %q", seen, want)
	}

	s := f.Stats()
	if s.RestoreCalls != 2 || s.FailedRestores != 1 || s.RestoreBytes != int64(2*len(kubeProxyPayload)) ||
		s.Calls[OpSave] != 2 || !bytes.Equal(s.LastRestore, []byte(kubeProxyPayload)) {
		t.Errorf("stats = %+v", s)
	}
	f.ResetStats()
	if s := f.Stats(); s.RestoreCalls != 0 || len(s.Calls) != 0 {
		t.Errorf("ResetStats left %+v", s)
	}
}

func TestFakeFamiliesAreSeparate(t *testing.T) {
	f := &Fake{}
	mustRestore(t, f, IPv6, "*filter\n:V6 - [0:0]\n-A V6 -s 2001:db8::1 -j REJECT\nCOMMIT\n")
	if _, ok := f.Rules(IPv4, TableFilter, "V6"); ok {
		t.Error("IPv6 chain visible in IPv4")
	}
	rules, _ := f.Rules(IPv6, TableFilter, "V6")
	if len(rules) != 1 || rules[0] != "-s 2001:db8::1/128 -j REJECT --reject-with icmp6-port-unreachable" {
		t.Errorf("IPv6 rules = %q", rules)
	}
}

func TestFakeConcurrentUse(t *testing.T) {
	ctx := context.Background()
	f := &Fake{}
	const workers, rounds = 8, 50
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			chain := fmt.Sprintf("W%d", w)
			for i := 0; i < rounds; i++ {
				payload := fmt.Sprintf("*nat\n:%s - [0:0]\n-A %s -m comment --comment round%d -j RETURN\nCOMMIT\n", chain, chain, i)
				if err := f.Restore(ctx, []Family{IPv4, IPv6}[w%2], []byte(payload), RestoreOptions{}); err != nil {
					t.Error(err)
					return
				}
				if _, err := f.Save(ctx, []Family{IPv4, IPv6}[w%2], TableNAT); err != nil {
					t.Error(err)
					return
				}
				if _, err := f.EnsureJump(ctx, []Family{IPv4, IPv6}[w%2], Jump{Table: TableNAT, From: ChainPrerouting, To: Chain(chain)}); err != nil {
					t.Error(err)
					return
				}
				_ = f.Dump()
				_ = f.Stats()
			}
		}(w)
	}
	wg.Wait()
	if s := f.Stats(); s.RestoreCalls != workers*rounds {
		t.Errorf("RestoreCalls = %d", s.RestoreCalls)
	}
	for w := 0; w < workers; w++ {
		rules, _ := f.Rules([]Family{IPv4, IPv6}[w%2], TableNAT, Chain(fmt.Sprintf("W%d", w)))
		if len(rules) != 1 || rules[0] != fmt.Sprintf("-m comment --comment round%d -j RETURN", rounds-1) {
			t.Errorf("worker %d: %q", w, rules)
		}
	}
}

func TestFakeIPSetCoupling(t *testing.T) {
	ctx := context.Background()
	sets := map[string]bool{"KUBE-LOOP-BACK": true}
	f := NewFake(FakeOptions{IPSetExists: func(fam Family, name string) bool { return fam == IPv4 && sets[name] }})
	missing := "*nat\n:A - [0:0]\n-A A -m set --match-set KUBE-MISSING dst,dst,src -j RETURN\nCOMMIT\n"
	var ee *ExecError
	if err := f.Restore(ctx, IPv4, []byte(missing), RestoreOptions{}); !errors.As(err, &ee) || ee.Line != 3 || ee.ExitCode != 2 {
		t.Fatalf("rule matching a missing set: %v", err)
	}
	mustRestore(t, f, IPv4, "*nat\n:A - [0:0]\n-A A -m set ! --match-set KUBE-LOOP-BACK dst,dst,src -j RETURN\nCOMMIT\n")
	if !f.IPSetReferenced(IPv4, "KUBE-LOOP-BACK") || f.IPSetReferenced(IPv4, "KUBE-LOOP") || f.IPSetReferenced(IPv6, "KUBE-LOOP-BACK") {
		t.Error("IPSetReferenced is wrong")
	}
	mustRestore(t, f, IPv4, "*nat\n:A - [0:0]\nCOMMIT\n")
	if f.IPSetReferenced(IPv4, "KUBE-LOOP-BACK") {
		t.Error("reference survived a flush")
	}
}
