// Package iptables is kproxy's iptables proxier and the seam it uses to
// talk to the machine.
//
// This file set covers the machine side only:
//
//   - [Kernel] is everything the proxier needs from iptables: dump tables
//     (iptables-save), apply a ruleset atomically per table
//     (iptables-restore --noflush, one exec per call), and a handful of
//     single-rule operations for the bootstrap jumps from the built-in
//     chains into kproxy's top-level chains.
//   - [ExecKernel] implements Kernel by executing the iptables binaries of
//     one backend (iptables-nft or iptables-legacy), optionally inside a
//     named network namespace. [DetectBackend] picks the backend the node
//     already uses, the way kube-proxy's image does.
//   - [Fake] implements Kernel in memory and behaves like the kernel:
//     restore payloads are parsed and validated like iptables-restore does,
//     each table block is applied copy-then-commit, and Save prints
//     canonical iptables-save text. A differential test keeps it honest
//     against the real kernel.
//
// Errors from both implementations are [*ExecError] values classified by
// exit status; use errors.Is with [ErrLockHeld], [ErrInvalidRuleset],
// [ErrIncompatible], [ErrChainNotFound] or [ErrBinaryNotFound] rather than
// looking at error text.
//
// # Transaction semantics worth knowing
//
// iptables-restore commits every "*table ... COMMIT" block on its own: when
// a payload holding nat and filter fails inside filter, the nat block has
// already been committed. Both backends behave this way (verified on
// iptables 1.8.9) and so does the Fake. Callers that need all-or-nothing
// across tables must order their blocks so that a later failure is
// harmless, or restore one table per call.
package iptables
