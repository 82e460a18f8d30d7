package proxier

import "context"

// Proxier programs the kernel (or any data plane) to match a State. It is the seam
// between kproxy's model and a backend: the iptables and IPVS packages implement it, and
// so can an embedder's own backend.
//
// Sync and Cleanup are never called concurrently by a Runner.
type Proxier interface {
	// Sync makes the data plane match state. changes names what differs from the
	// state of the previous successful Sync; when changes.Full is set (always on the
	// first call and after a failure), the backend must read back and repair
	// everything it owns. An error means the previous data plane is still in place, as
	// far as the backend can guarantee; the Runner retries with a full sync.
	Sync(ctx context.Context, state *State, changes ChangeSet) error
	// Cleanup removes everything this backend owns and nothing else.
	Cleanup(ctx context.Context) error
}

// Source is where a Runner takes its snapshots from; a *Builder is one.
type Source interface {
	// Snapshot returns the current state and what changed since the previous call.
	Snapshot() (*State, ChangeSet)
	// Changed receives after the model changed (notifications may be folded).
	Changed() <-chan struct{}
	// Initialized is closed once the model reflects everything that existed at start.
	Initialized() <-chan struct{}
}

var _ Source = (*Builder)(nil)

// ProxierFunc adapts a function to the Proxier interface, for backends that own
// nothing to clean up (exporters, loggers, tests).
type ProxierFunc func(ctx context.Context, state *State, changes ChangeSet) error

// Sync calls f.
func (f ProxierFunc) Sync(ctx context.Context, s *State, c ChangeSet) error { return f(ctx, s, c) }

// Cleanup does nothing.
func (f ProxierFunc) Cleanup(context.Context) error { return nil }
