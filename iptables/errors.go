package iptables

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Sentinel errors for errors.Is. Kernel implementations return
// [*ExecError] values that match at most one of the classification
// sentinels, decided from the exit status and backend, never from the
// message text.
var (
	// ErrLockHeld means the xtables lock (/run/xtables.lock) stayed held by
	// someone else for longer than the configured wait. Only
	// iptables-legacy takes that lock; retrying later is the right answer.
	ErrLockHeld = errors.New("iptables: xtables lock held by another process")
	// ErrInvalidRuleset means iptables or the kernel refused the change:
	// a parse error, a jump to a missing chain, deleting a chain that is
	// still referenced or not empty, a target used in the wrong table or
	// hook, a loop. Retrying the same payload will fail again.
	ErrInvalidRuleset = errors.New("iptables: ruleset rejected")
	// ErrIncompatible means iptables reported a version problem (exit
	// status 3): the kernel lacks a module or the userspace tool and the
	// kernel disagree.
	ErrIncompatible = errors.New("iptables: incompatible kernel or iptables version")
	// ErrChainNotFound means an operation needed a chain that does not
	// exist.
	ErrChainNotFound = errors.New("iptables: chain not found")
	// ErrBinaryNotFound means an iptables binary of the selected backend
	// is not installed (or not on PATH).
	ErrBinaryNotFound = errors.New("iptables: binary not found")
)

// Exit statuses iptables, iptables-save and iptables-restore use
// (xtables.h), verified against iptables 1.8.9 of both variants:
//
//   - 1 OTHER_PROBLEM: a command failed: iptables-restore's "line N failed"
//     when a table block could not be committed (legacy reports the
//     COMMIT line), "COMMIT expected", and for the iptables command
//     "chain already exists", "no such chain/rule", legacy's "directory
//     not empty" on -X.
//   - 2 PARAMETER_PROBLEM: the input did not parse: unknown option, bad
//     argument, unknown table, jump to a missing chain (reported as
//     "Error occurred at line: N"; nft reports the COMMIT line for the
//     missing chain case).
//   - 3 VERSION_PROBLEM: missing kernel support.
//   - 4 RESOURCE_PROBLEM: iptables-legacy could not get the xtables lock
//     within -w SECONDS; iptables-nft never takes that lock and instead
//     uses 4 when the kernel rejects the nf_tables transaction (EBUSY for
//     deleting a referenced or non-empty chain, EINVAL for a target in
//     the wrong hook, ELOOP), reported as "line N: ... failed (...)".
const (
	exitOtherProblem     = 1
	exitParameterProblem = 2
	exitVersionProblem   = 3
	exitResourceProblem  = 4
)

// Operation names used in ExecError.Op and by the Fake's fault injection.
const (
	OpSave        = "save"
	OpRestore     = "restore"
	OpVersion     = "version"
	OpEnsureChain = "ensure-chain"
	OpChainExists = "chain-exists"
	OpFlushChain  = "flush-chain"
	OpDeleteChain = "delete-chain"
	OpEnsureJump  = "ensure-jump"
	OpDeleteJump  = "delete-jump"
)

// ExecError describes a failed iptables invocation. It is returned by Exec
// and, with a synthetic Cmd, by Fake, so callers handle both alike.
type ExecError struct {
	// Op is the Kernel operation that failed (one of the Op* constants).
	Op string
	// Backend is the variant that ran the command.
	Backend Backend
	// Cmd is the executable that ran.
	Cmd string
	// Args are its arguments (payloads are not included: they went to
	// stdin).
	Args []string
	// ExitCode is the exit status, or -1 when the process did not exit
	// normally (killed, context cancelled, could not start).
	ExitCode int
	// Stderr is what the command printed on stderr, trimmed.
	Stderr string
	// Line is the 1-based payload line iptables-restore blamed, 0 when it
	// named none. nft blames the offending rule line, legacy often the
	// COMMIT line of the failing table block.
	Line int
	// LineText is the payload text of Line, for logs.
	LineText string
	// Err is the underlying error (*exec.ExitError, a context error, ...).
	Err error

	// kind is the classification sentinel matched by Is, or nil.
	kind error
}

// Error renders the command, status and stderr in one line.
func (e *ExecError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s", e.Cmd)
	if len(e.Args) > 0 {
		fmt.Fprintf(&b, " %s", strings.Join(e.Args, " "))
	}
	if e.ExitCode >= 0 {
		fmt.Fprintf(&b, ": exit status %d", e.ExitCode)
	} else if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, " (payload line %d", e.Line)
		if e.LineText != "" {
			fmt.Fprintf(&b, ": %q", e.LineText)
		}
		b.WriteString(")")
	}
	if e.Stderr != "" {
		fmt.Fprintf(&b, ": %s", oneLine(e.Stderr))
	}
	return b.String()
}

// Unwrap exposes the underlying error, e.g. context.DeadlineExceeded.
func (e *ExecError) Unwrap() error { return e.Err }

// Is matches the classification sentinel chosen when the error was built.
func (e *ExecError) Is(target error) bool { return e.kind != nil && target == e.kind }

// Kind returns the classification sentinel (ErrLockHeld, ErrInvalidRuleset,
// ...) or nil when the failure is unclassified.
func (e *ExecError) Kind() error { return e.kind }

// classifyExit maps an exit status to a sentinel. Mutating operations are
// those whose exit 4 on nft means "the kernel rejected the transaction".
func classifyExit(op string, backend Backend, code int) error {
	switch code {
	case exitResourceProblem:
		if backend == BackendLegacy {
			return ErrLockHeld
		}
		if op != OpSave && op != OpVersion && op != OpChainExists {
			return ErrInvalidRuleset
		}
	case exitVersionProblem:
		return ErrIncompatible
	case exitOtherProblem, exitParameterProblem:
		if op == OpRestore {
			return ErrInvalidRuleset
		}
		if code == exitParameterProblem && op != OpSave && op != OpVersion {
			return ErrInvalidRuleset
		}
	}
	return nil
}

// lineRE finds the payload line iptables-restore blamed. Both variants
// use one of "Error occurred at line: N", "line N failed", "line N: ..."
// or "COMMIT expected at line N"; the first mention is the culprit.
var lineRE = regexp.MustCompile(`\bline:? ([0-9]+)\b`)

// blamedLine extracts the line number from iptables-restore's stderr.
// Parsing the message is unavoidable here: the number is only reported
// as text.
func blamedLine(stderr string) int {
	m := lineRE.FindStringSubmatch(stderr)
	if m == nil {
		return 0
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return 0
	}
	return n
}

// payloadLine returns line n (1-based) of payload without its newline.
func payloadLine(payload []byte, n int) string {
	for i := 1; n > 0 && len(payload) > 0; i++ {
		line, rest, _ := bytes.Cut(payload, []byte{'\n'})
		if i == n {
			return string(line)
		}
		payload = rest
	}
	return ""
}

// oneLine joins multi-line stderr so an error stays on one log line.
func oneLine(s string) string {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	return strings.Join(fields, "; ")
}
