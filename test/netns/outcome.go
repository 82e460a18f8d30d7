package netns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
)

// Outcome is the class of a probe's result. Proxier tests assert on it: a service without
// endpoints must be Refused (REJECT), a Local-policy service without local endpoints must
// time out (DROP), and so on.
type Outcome int

const (
	// OK means the server answered.
	OK Outcome = iota
	// Refused means ECONNREFUSED: a TCP RST, or an ICMP port unreachable (which is what an
	// iptables REJECT sends by default).
	Refused
	// Timeout means nothing came back before the deadline: a DROP, a black hole, a lost
	// route.
	Timeout
	// Unreachable means an ICMP host, network or administratively-prohibited unreachable,
	// or no route at all (EHOSTUNREACH, ENETUNREACH).
	Unreachable
	// Reset means an established connection was reset or closed by the peer.
	Reset
	// Failed is anything else: a malformed reply, a closed namespace, a bad address.
	Failed
)

// String returns the outcome's name.
func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case Refused:
		return "refused"
	case Timeout:
		return "timeout"
	case Unreachable:
		return "unreachable"
	case Reset:
		return "reset"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Classify maps a probe error to an [Outcome]; nil is OK. It looks at errno values and
// timeout markers, never at message text.
func Classify(err error) Outcome {
	switch {
	case err == nil:
		return OK
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused
	case isTimeout(err):
		return Timeout
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.EACCES):
		return Unreachable
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return Reset
	}
	return Failed
}

// isTimeout recognises every way the standard library reports a deadline: connect
// timeouts (context.DeadlineExceeded), socket deadlines (os.ErrDeadlineExceeded) and
// ETIMEDOUT from the kernel.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, syscall.ETIMEDOUT) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// probeError wraps a failed probe with its context. Timeouts additionally wrap
// os.ErrDeadlineExceeded, so errors.Is(err, os.ErrDeadlineExceeded) holds for a connect
// timeout as well as for a read deadline; errno values stay reachable through Unwrap.
func probeError(op string, from *NS, to string, err error) error {
	if isTimeout(err) && !errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("netns: %s %s from %s: %w (%w)", op, to, from, os.ErrDeadlineExceeded, err)
	}
	return fmt.Errorf("netns: %s %s from %s: %w", op, to, from, err)
}
