package kernel

import (
	"testing"

	"github.com/kproxy/kproxy/iptables"
	"github.com/kproxy/kproxy/proxier/metrics"
)

// TestRestoreRejectedByKernel makes the kernel itself refuse one of kproxy's
// iptables-restore transactions, on iptables-nft (which has no xtables lock) and on
// iptables-legacy, and requires the same as for a held lock: the sync fails
// (ErrInvalidRuleset), the previous ruleset stays byte-identical and keeps serving, the
// failure is counted and logged, and the Runner's full retry succeeds once the cause is
// gone.
//
// The cause is a foreign rule, not a mock: another program's nat chain, called from
// POSTROUTING, jumps into kproxy's KUBE-NODEPORTS. That is accepted while KUBE-NODEPORTS
// is empty, but DNAT is only valid in PREROUTING and OUTPUT, so the kernel rejects any
// transaction that makes a DNAT reachable from POSTROUTING (nf_tables and x_tables both
// answer EINVAL): the change that adds a node port fails as a whole. Removing the
// foreign jump clears the fault. This was preferred to a wrapper that fails in place of
// iptables-restore because the failure comes from the kernel, through the real binary,
// with the real exit status and message, and because the rejected payload really
// reached the kernel, which is what "the previous ruleset stays intact" must survive.
func TestRestoreRejectedByKernel(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, b)
			m, logs := metrics.New(), &logBook{}
			p := w.nodeProxier(t, m, logs)
			const chain = "ADMIN-SNAT"
			runRestoreFault(t, w, p, m, logs, restoreFault{
				inject: func(t *testing.T) {
					w.iptables(t, "nat", "-N", chain)
					w.iptables(t, "nat", "-A", "POSTROUTING", "-j", chain)
					w.iptables(t, "nat", "-A", chain, "-j", "KUBE-NODEPORTS")
				},
				clear: func(t *testing.T) {
					w.iptables(t, "nat", "-D", chain, "-j", "KUBE-NODEPORTS")
				},
				kind:   iptables.ErrInvalidRuleset,
				logged: "iptables-" + string(b) + "-restore",
			})
		})
	}
}
