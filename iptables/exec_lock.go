package iptables

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultLockFile is the xtables lock iptables-legacy serialises on. It is
// a host-wide file: network namespaces do not get their own.
const DefaultLockFile = "/run/xtables.lock"

// lockPollInterval is how often a busy lock is retried, matching the
// interval iptables itself uses.
const lockPollInterval = 100 * time.Millisecond

// errLockTimeout is returned by acquireXtablesLock when the wait expires.
var errLockTimeout = errors.New("timed out waiting for the xtables lock")

// acquireXtablesLock takes the xtables lock the way iptables does (flock
// on the lock file), waiting up to wait (forever when wait < 0). It is
// only used for iptables-restore older than 1.6.2, which cannot wait for
// the lock on its own. The returned function releases the lock.
func acquireXtablesLock(ctx context.Context, path string, wait time.Duration) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open xtables lock %s: %w", path, err)
	}
	release := func() { f.Close() } // closing the file drops the flock
	deadline := time.Now().Add(wait)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return release, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			release()
			return nil, fmt.Errorf("flock %s: %w", path, err)
		}
		if wait >= 0 && !time.Now().Before(deadline) {
			release()
			return nil, errLockTimeout
		}
		select {
		case <-ctx.Done():
			release()
			return nil, ctx.Err()
		case <-time.After(lockPollInterval):
		}
	}
}
