package iptables

import (
	"context"
	"slices"
	"testing"
)

// ensureJumpsCases has what EnsureJumps must get right: prepended and appended jumps, two
// into the same built-in chain, comments that need quoting, extra matches.
func ensureJumpsCases() []Jump {
	return []Jump{
		{Table: TableNAT, From: ChainOutput, To: "KUBE-SERVICES", Comment: "kubernetes service portals"},
		{Table: TableNAT, From: ChainPrerouting, To: "KUBE-SERVICES", Comment: "kubernetes service portals"},
		{Table: TableFilter, From: ChainInput, To: "KUBE-NODE-PORT", Comment: "kubernetes health check rules"},
		{Table: TableFilter, From: ChainInput, To: "KUBE-PROXY-FIREWALL", Comment: "kube-proxy firewall rules",
			Match: []string{"-m", "conntrack", "--ctstate", "NEW"}},
		{Table: TableFilter, From: ChainForward, To: "KUBE-FORWARD", Comment: "kubernetes forwarding rules", Position: Append},
		{Table: TableFilter, From: ChainInput, To: "KUBE-FORWARD", Comment: "a second jump from INPUT"},
	}
}

const testJumpChains = "*nat\n:KUBE-SERVICES - [0:0]\n-A OUTPUT -j RETURN\nCOMMIT\n" +
	"*filter\n:KUBE-NODE-PORT - [0:0]\n:KUBE-PROXY-FIREWALL - [0:0]\n:KUBE-FORWARD - [0:0]\n-A INPUT -j ACCEPT\n-A FORWARD -j ACCEPT\nCOMMIT\n"

// ensureJumpsAgree checks EnsureJumps against EnsureJump one jump after another on two
// kernels in the same state, with one of the jumps already present: the same rules in
// the same order, and nothing added by a second call.
func ensureJumpsAgree(t *testing.T, one, batched Kernel) {
	t.Helper()
	ctx := context.Background()
	jumps := ensureJumpsCases()
	for _, k := range []Kernel{one, batched} {
		if err := k.Restore(ctx, IPv4, []byte(testJumpChains), RestoreOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := k.EnsureJump(ctx, IPv4, jumps[3]); err != nil {
			t.Fatal(err)
		}
	}
	for _, j := range jumps {
		if _, err := one.EnsureJump(ctx, IPv4, j); err != nil {
			t.Fatal(err)
		}
	}
	added, err := EnsureJumps(ctx, batched, IPv4, jumps)
	if err != nil {
		t.Fatal(err)
	}
	if want := slices.Delete(slices.Clone(jumps), 3, 4); !slices.EqualFunc(added, want, jumpEqual) {
		t.Errorf("EnsureJumps added %v, want %v", added, want)
	}
	want, err := one.Save(ctx, IPv4, TableNAT, TableFilter)
	if err != nil {
		t.Fatal(err)
	}
	got, err := batched.Save(ctx, IPv4, TableNAT, TableFilter)
	if err != nil {
		t.Fatal(err)
	}
	if normalizeSave(string(got)) != normalizeSave(string(want)) {
		t.Errorf("EnsureJumps left\n%s\nEnsureJump one by one left\n%s", normalizeSave(string(got)), normalizeSave(string(want)))
	}
	if added, err := EnsureJumps(ctx, batched, IPv4, jumps); err != nil || len(added) != 0 {
		t.Errorf("second EnsureJumps added %v, %v; want nothing", added, err)
	}
}

func jumpEqual(a, b Jump) bool {
	return slices.Equal(a.Args(), b.Args()) && a.From == b.From && a.Table == b.Table
}

func TestEnsureJumpsFake(t *testing.T) {
	f := &Fake{}
	ensureJumpsAgree(t, &Fake{}, f)
	restores := f.Stats().RestoreCalls
	if _, err := EnsureJumps(context.Background(), f, IPv4, ensureJumpsCases()); err != nil {
		t.Fatal(err)
	}
	if n := f.Stats().RestoreCalls - restores; n != 0 {
		t.Errorf("EnsureJumps with every jump present ran %d restores", n)
	}
}

// TestEnsureJumpsInKernel runs the comparison on real iptables, both backends, where
// iptables-save's spelling of the rules is what EnsureJumps must recognise.
func TestEnsureJumpsInKernel(t *testing.T) {
	for _, b := range []Backend{BackendNFT, BackendLegacy} {
		t.Run(string(b), func(t *testing.T) {
			requireRoot(t)
			requireBackend(t, b)
			ensureJumpsAgree(t, newTestExec(t, b, newTestNetns(t), 5), newTestExec(t, b, newTestNetns(t), 5))
		})
	}
}
