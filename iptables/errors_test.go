package iptables

import (
	"context"
	"errors"
	"testing"
)

func TestBlamedLine(t *testing.T) {
	// Messages copied from iptables 1.8.9 (nft and legacy) runs.
	cases := []struct {
		stderr string
		want   int
	}{
		{"iptables-nft-restore v1.8.9 (nf_tables): Chain 'KUBE-BAR' does not exist\nError occurred at line: 6\nTry `iptables-nft-restore -h' for more information.", 6},
		{"iptables-restore: line 15 failed", 15},
		{"iptables-nft-restore: line 2 failed: No chain/target/match by that name.", 2},
		{"iptables-nft-restore v1.8.9 (nf_tables): \nline 10: RULE_APPEND failed (Invalid argument): rule in chain MMM\nline 11: RULE_APPEND failed (Invalid argument): rule in chain MMM", 10},
		{"iptables-restore: COMMIT expected at line 4", 4},
		{"Another app is currently holding the xtables lock. Stopped waiting after 1s.", 0},
		{"", 0},
	}
	for _, c := range cases {
		if got := blamedLine(c.stderr); got != c.want {
			t.Errorf("blamedLine(%q) = %d, want %d", c.stderr, got, c.want)
		}
	}
}

func TestPayloadLine(t *testing.T) {
	p := []byte("*nat\n:A - [0:0]\n-A A -j RETURN\nCOMMIT\n")
	for n, want := range map[int]string{0: "", 1: "*nat", 3: "-A A -j RETURN", 4: "COMMIT", 5: "", 9: ""} {
		if got := payloadLine(p, n); got != want {
			t.Errorf("payloadLine(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestClassifyExit(t *testing.T) {
	cases := []struct {
		op      string
		backend Backend
		code    int
		want    error
	}{
		{OpRestore, BackendLegacy, 4, ErrLockHeld},
		{OpRestore, BackendNFT, 4, ErrInvalidRuleset}, // kernel refused the transaction
		{OpRestore, BackendNFT, 1, ErrInvalidRuleset},
		{OpRestore, BackendLegacy, 2, ErrInvalidRuleset},
		{OpRestore, BackendNFT, 3, ErrIncompatible},
		{OpSave, BackendNFT, 4, nil},
		{OpSave, BackendNFT, 1, nil},
		{OpDeleteChain, BackendNFT, 4, ErrInvalidRuleset},
		{OpEnsureJump, BackendLegacy, 4, ErrLockHeld},
		{OpEnsureJump, BackendNFT, 2, ErrInvalidRuleset},
		{OpEnsureChain, BackendNFT, 1, nil},
	}
	for _, c := range cases {
		if got := classifyExit(c.op, c.backend, c.code); got != c.want {
			t.Errorf("classifyExit(%s, %s, %d) = %v, want %v", c.op, c.backend, c.code, got, c.want)
		}
	}
	if got := classifyOp(OpFlushChain, BackendNFT, 1); got != ErrChainNotFound {
		t.Errorf("classifyOp(flush, 1) = %v, want ErrChainNotFound", got)
	}
}

func TestExecErrorIsAndUnwrap(t *testing.T) {
	e := &ExecError{Op: OpRestore, Cmd: "iptables-legacy-restore", Args: []string{"-w", "1", "--noflush"},
		ExitCode: 4, Stderr: "Another app is currently holding the xtables lock.", Err: context.DeadlineExceeded, kind: ErrLockHeld}
	var err error = e
	if !errors.Is(err, ErrLockHeld) || errors.Is(err, ErrInvalidRuleset) {
		t.Errorf("classification broken: %v", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Unwrap broken")
	}
	want := "iptables-legacy-restore -w 1 --noflush: exit status 4: Another app is currently holding the xtables lock."
	if e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
}
