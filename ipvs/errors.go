package ipvs

import (
	"errors"
	"fmt"
	"syscall"
)

// Classification sentinels for errors.Is. Kernel implementations return *KernelError
// values that match at most one of them, decided from the errno the kernel answered,
// never from message text. errors.Is also matches the errno itself
// (errors.Is(err, syscall.ESRCH)).
var (
	// ErrNotFound means the object the operation needs does not exist: a virtual
	// server (ESRCH), a real server, set, set member or link (ENOENT, ENODEV), or an
	// address (EADDRNOTAVAIL). Deleting something already gone is usually fine.
	ErrNotFound = errors.New("ipvs: not found")
	// ErrExist means the object to create exists already (EEXIST).
	ErrExist = errors.New("ipvs: already exists")
	// ErrInvalid means the kernel rejected the arguments (EINVAL, ERANGE, EFAULT,
	// EAFNOSUPPORT): an unknown scheduler module, a family mismatch between a
	// virtual and a real server, a member that does not fit its set. Retrying the
	// same call fails again.
	ErrInvalid = errors.New("ipvs: invalid argument")
	// ErrBusy means the object is in use (EBUSY): an ipset still referenced by an
	// iptables rule cannot be destroyed.
	ErrBusy = errors.New("ipvs: in use")
)

// KernelError describes a failed Kernel operation. Both the netlink implementation and
// the Fake return it, so callers handle them alike.
type KernelError struct {
	// Op is the operation that failed, one of the Op* names (e.g. OpAddService).
	Op string
	// Object names what the operation was about: a virtual server key, a real server,
	// an address, a set name and member.
	Object string
	// Errno is the kernel's answer, normalised: ipset's private codes are mapped to
	// the errno they stand for (IPSET_ERR_EXIST is EEXIST when adding, ENOENT when
	// deleting). Zero when the failure was not an errno (a closed handle, say).
	Errno syscall.Errno
	// Err is the underlying error as the library returned it.
	Err error
}

// Error names the operation, the object and the cause.
func (e *KernelError) Error() string {
	cause := e.Err
	if cause == nil {
		cause = e.Errno
	}
	if e.Object == "" {
		return fmt.Sprintf("ipvs %s: %v", e.Op, cause)
	}
	return fmt.Sprintf("ipvs %s %s: %v", e.Op, e.Object, cause)
}

// Unwrap exposes the errno and the underlying error.
func (e *KernelError) Unwrap() []error {
	var errs []error
	if e.Errno != 0 {
		errs = append(errs, e.Errno)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// Is matches the classification sentinel of the errno.
func (e *KernelError) Is(target error) bool {
	return target != nil && target == classify(e.Errno)
}

// classify maps an errno to a sentinel, or nil.
func classify(errno syscall.Errno) error {
	switch errno {
	case syscall.ENOENT, syscall.ESRCH, syscall.ENODEV, syscall.ENXIO, syscall.EADDRNOTAVAIL:
		return ErrNotFound
	case syscall.EEXIST:
		return ErrExist
	case syscall.EINVAL, syscall.ERANGE, syscall.EFAULT, syscall.EAFNOSUPPORT, syscall.EPROTONOSUPPORT:
		return ErrInvalid
	case syscall.EBUSY:
		return ErrBusy
	}
	return nil
}

// kernelErr builds a *KernelError for an errno.
func kernelErr(op, object string, errno syscall.Errno) error {
	return &KernelError{Op: op, Object: object, Errno: errno}
}

// ApplyError reports a plan that stopped part-way. IPVS has no transactions: the first
// Applied operations are in the kernel, Op failed, the operations after it up to
// Attempted were sent in the same batch (and may be in the kernel too), and the rest
// were not attempted, except addresses that were bound concurrently because every
// virtual server on them was complete (see Apply). A full sync reads the kernel back
// and converges from wherever this left it.
type ApplyError struct {
	// Applied is how many operations succeeded before the failure; Attempted is how
	// many were sent to the kernel, the failed one included; Total is the length of
	// the plan.
	Applied, Attempted, Total int
	// Op is the operation that failed.
	Op Op
	// Err is its error.
	Err error
}

// Error says where the plan stopped and why.
func (e *ApplyError) Error() string {
	return fmt.Sprintf("ipvs: plan stopped after %d of %d operations at %s: %v", e.Applied, e.Total, e.Op, e.Err)
}

// Unwrap returns the failed operation's error.
func (e *ApplyError) Unwrap() error { return e.Err }

// OptionsError reports an invalid option given to New.
type OptionsError struct {
	Field  string
	Reason string
}

// Error names the option and what is wrong with it.
func (e *OptionsError) Error() string { return "ipvs: invalid option " + e.Field + ": " + e.Reason }
