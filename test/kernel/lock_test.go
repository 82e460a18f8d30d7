package kernel

import (
	"bufio"
	"context"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kproxy/kproxy/iptables"
	"github.com/kproxy/kproxy/proxier/conntrack"
	"github.com/kproxy/kproxy/proxier/metrics"
)

// TestRestoreFailsWhileXtablesLockHeld: another process holds the xtables lock while a
// change is synced on iptables-legacy. iptables-restore gives up after its -w wait, the
// sync fails with ErrLockHeld, the old rules keep serving, the failure is counted and
// logged, and once the lock is free the Runner's full retry applies the change.
//
// The lock is a private file named by XTABLES_LOCKFILE (which iptables-legacy honours)
// for both the holder and the proxier's iptables processes, so the host's
// /run/xtables.lock, and every other iptables user on the machine, is never blocked.
func TestRestoreFailsWhileXtablesLockHeld(t *testing.T) {
	t.Parallel()
	w := newWorld(t, iptables.BackendLegacy)
	requireTools(t, "flock")
	lock := filepath.Join(t.TempDir(), "xtables.lock")
	m, logs := metrics.New(), &logBook{}
	p := w.privateLockProxier(t, lock, m, logs)

	var release func()
	runRestoreFault(t, w, p, m, logs, restoreFault{
		inject: func(t *testing.T) { release = holdLock(t, lock) },
		clear:  func(*testing.T) { release() },
		kind:   iptables.ErrLockHeld,
		logged: "holding the xtables lock",
	})
}

// privateLockProxier builds the Proxier NewNodeProxier would, over an ExecKernel whose
// iptables processes use the lock file lock and wait for it one second (the shortest
// bounded wait), so a held lock fails a restore quickly.
func (w *world) privateLockProxier(t *testing.T, lock string, m *metrics.Metrics, logs *logBook) *iptables.Proxier {
	t.Helper()
	ctx := context.Background()
	log := logs.logger(t).WithName("iptables")
	netnsPath := w.topo.Node.Path()
	k, err := iptables.NewExecKernel(ctx, iptables.ExecOptions{
		Backend:     w.backend,
		Netns:       netnsPath,
		WaitSeconds: 1,
		LockFile:    lock,
		Env:         []string{"XTABLES_LOCKFILE=" + lock},
		Logger:      log,
	})
	if err != nil {
		t.Fatal(err)
	}
	feat, err := k.Features(ctx, iptables.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	sets, err := iptables.NewNetlinkIPSets(iptables.NetlinkIPSetOptions{Netns: netnsPath, Metrics: m, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ct, err := conntrack.NewNetlink(conntrack.NetlinkOptions{Netns: netnsPath, Metrics: m, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ro := w.renderOptions()
	ro.Family, ro.RandomFully = iptables.IPv4, feat.RandomFully
	p, err := iptables.New(ctx, iptables.Options{
		Family: iptables.IPv4, Kernel: k, Render: ro, IPSets: sets, Conntrack: ct, Metrics: m, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := p.Cleanup(ctx); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		_ = sets.Close()
		_ = ct.Close()
	})
	return p
}

// holdLock starts another process (flock(1), without forking, so the one process holds
// the lock) that takes the lock file exclusively and keeps it until the returned
// function, or the test's end, kills it.
func holdLock(t *testing.T, path string) (release func()) {
	t.Helper()
	cmd := exec.Command("flock", "--exclusive", "--no-fork", path, "sh", "-c", "echo locked; exec sleep 600")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the lock holder: %v", err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Logf("lock holder (pid %d) ended: %s is free", cmd.Process.Pid, path)
		})
	}
	t.Cleanup(release)
	locked := make(chan error, 1)
	go func() {
		_, err := bufio.NewReader(out).ReadString('\n')
		locked <- err
	}()
	select {
	case err := <-locked:
		if err != nil {
			t.Fatalf("the lock holder did not take %s: %v", path, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the lock holder did not take %s within 10s", path)
	}
	t.Logf("lock holder (pid %d) holds %s", cmd.Process.Pid, path)
	return release
}
