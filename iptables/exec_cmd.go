package iptables

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"time"

	goiptables "github.com/coreos/go-iptables/iptables"
	"github.com/go-logr/logr"
)

// cmdRunner starts iptables processes inside the configured network
// namespace and turns failures into classified *ExecError values.
type cmdRunner struct {
	ns      *netnsRunner
	backend Backend
	// env is added to the caller's environment of every process; see
	// ExecOptions.Env.
	env []string
	log logr.Logger
}

// run executes bin with args, feeding stdin when non-nil, and returns
// stdout. A failure is an *ExecError classified for op.
func (r *cmdRunner) run(ctx context.Context, op, bin string, args []string, stdin []byte) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	start := time.Now()
	err := r.ns.do(func() error {
		cmd := exec.CommandContext(ctx, bin, args...)
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		cmd.Stdout = &stdout
		cmd.Stderr = &stderr
		if len(r.env) > 0 {
			cmd.Env = append(os.Environ(), r.env...)
		}
		return cmd.Run()
	})
	r.log.V(4).Info("ran iptables", "op", op, "cmd", bin, "args", args, "stdinBytes", len(stdin),
		"stdoutBytes", stdout.Len(), "duration", time.Since(start), "netns", r.ns.String(), "err", err)
	if err == nil {
		return stdout.Bytes(), nil
	}
	return stdout.Bytes(), r.newExecError(ctx, op, bin, args, stderr.String(), err)
}

// newExecError builds a classified *ExecError from a process failure.
func (r *cmdRunner) newExecError(ctx context.Context, op, bin string, args []string, stderr string, err error) *ExecError {
	e := &ExecError{
		Op:       op,
		Backend:  r.backend,
		Cmd:      bin,
		Args:     args,
		ExitCode: -1,
		Stderr:   strings.TrimSpace(stderr),
		Err:      err,
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) && exitErr.Exited() {
		e.ExitCode = exitErr.ExitCode()
		e.kind = classifyOp(op, r.backend, e.ExitCode)
	}
	if ctxErr := ctx.Err(); ctxErr != nil && e.ExitCode < 0 {
		// Killed because the context ended: report that, not "signal: killed".
		e.Err = ctxErr
	}
	return e
}

// fromGoIPTables converts an error returned by go-iptables into an
// *ExecError. go-iptables keeps stderr private but includes it in Error(),
// so the original error is kept as Err.
func (r *cmdRunner) fromGoIPTables(op, bin string, args []string, err error) error {
	if err == nil {
		return nil
	}
	var gerr *goiptables.Error
	if !errors.As(err, &gerr) {
		return &ExecError{Op: op, Backend: r.backend, Cmd: bin, Args: args, ExitCode: -1, Err: err}
	}
	code := gerr.ExitStatus()
	return &ExecError{
		Op: op, Backend: r.backend, Cmd: bin, Args: args, ExitCode: code, Err: err,
		kind: classifyOp(op, r.backend, code),
	}
}

// exitCodeOf returns the exit status carried by err, or -1.
func exitCodeOf(err error) int {
	var ee *ExecError
	if errors.As(err, &ee) {
		return ee.ExitCode
	}
	return -1
}

// classifyOp extends classifyExit with the meaning exit status 1 has for
// the single-rule iptables commands: for -F and for inserting a rule it
// can only mean the chain is missing.
func classifyOp(op string, backend Backend, code int) error {
	if code == exitOtherProblem && (op == OpFlushChain || op == OpEnsureJump) {
		return ErrChainNotFound
	}
	return classifyExit(op, backend, code)
}
