package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Cmd is an os/exec command that starts inside a namespace. It is started from a thread
// switched into the namespace, and a forked child inherits its parent thread's namespace,
// so no nsenter binary (and no re-exec of the test binary) is needed; this works unchanged
// in a busybox VM. The child shares the caller's mount namespace, so unlike
// `ip netns exec` it sees the host's /sys; netlink- and /proc-based tools do not care.
//
// Use it like exec.Cmd. Start, Run, Output and CombinedOutput are overridden to start in
// the namespace; everything else (Wait, pipes, Process) is exec.Cmd's own. Calling the
// embedded c.Cmd.Run or c.Cmd.Start directly would start the process in the caller's
// namespace instead. A running process keeps its namespace alive after [NS.Close]; stop
// it (cancel its context) before closing.
type Cmd struct {
	*exec.Cmd
	ns *NS
}

// Command prepares name with args to run inside the namespace. As with
// exec.CommandContext, the process is killed when ctx is done.
func (n *NS) Command(ctx context.Context, name string, args ...string) *Cmd {
	return &Cmd{Cmd: exec.CommandContext(ctx, name, args...), ns: n}
}

// Exec runs name with args inside the namespace and returns its combined output. A failure
// carries the output in its message, which is what a test log needs.
func (n *NS) Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := n.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("netns: %s in %s: %w: %s", strings.Join(append([]string{name}, args...), " "), n, err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Start starts the command inside the namespace.
func (c *Cmd) Start() error {
	return c.ns.Do(c.Cmd.Start)
}

// Run starts the command inside the namespace and waits for it.
func (c *Cmd) Run() error {
	if err := c.Start(); err != nil {
		return err
	}
	return c.Wait()
}

// Output runs the command and returns its standard output; on a non-zero exit the
// *exec.ExitError carries the standard error, as with exec.Cmd.Output.
func (c *Cmd) Output() ([]byte, error) {
	if c.Stdout != nil {
		return nil, errors.New("netns: Stdout already set")
	}
	var stdout, stderr bytes.Buffer
	c.Stdout = &stdout
	captureErr := c.Stderr == nil
	if captureErr {
		c.Stderr = &stderr
	}
	err := c.Run()
	var ee *exec.ExitError
	if captureErr && errors.As(err, &ee) {
		ee.Stderr = stderr.Bytes()
	}
	return stdout.Bytes(), err
}

// CombinedOutput runs the command and returns standard output and standard error
// interleaved.
func (c *Cmd) CombinedOutput() ([]byte, error) {
	if c.Stdout != nil || c.Stderr != nil {
		return nil, errors.New("netns: Stdout or Stderr already set")
	}
	var b bytes.Buffer
	c.Stdout, c.Stderr = &b, &b
	err := c.Run()
	return b.Bytes(), err
}
