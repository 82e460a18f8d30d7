package vm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// Run compiles opts.Package's tests with the vmtest tag, boots them in a fresh VM and fails t
// if they fail there. The VM's serial console is streamed into t's log line by line, so
// failures inside the VM read like local ones; a raw copy goes to console.log in t's
// temporary directory.
//
// Run skips t when the host cannot run the VM (not root, not linux/amd64, no QEMU), in -short
// mode, and inside the VM itself. It is safe to call from parallel tests; each call boots its
// own VM.
func Run(t testing.TB, opts Options) {
	t.Helper()
	if reason := skipReason(); reason != "" {
		t.Skip(reason)
	}
	opts, err := opts.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p, err := prepare(t, opts)
	if err != nil {
		t.Fatalf("vm: %v", err)
	}
	t.Logf("vm: kernel %s, %d MiB, %d vCPU, package %s (tests built in %s), timeout %s",
		p.kernelVersion, opts.MemoryMB, opts.CPUs, opts.Package, p.buildTime.Round(time.Millisecond), p.boot.Timeout)

	console, err := os.Create(filepath.Join(p.work, "console.log"))
	if err != nil {
		t.Fatalf("vm: %v", err)
	}
	defer console.Close()
	p.boot.Console = console

	// QEMU runs on another goroutine; logging happens here so that t attributes the lines to
	// the caller's test, and no line is logged after Run returns.
	lines := make(chan string, 256)
	p.boot.Lines = lines
	done := make(chan bootResult, 1)
	go func() { done <- boot(context.Background(), p.boot) }()
	for l := range lines {
		t.Log("vm| " + l)
	}
	report(t, <-done, time.Since(start))
}

// prepared is a run ready to boot.
type prepared struct {
	work          string // the run's temporary directory
	kernelVersion string
	buildTime     time.Duration
	boot          bootSpec // without Console and Lines
}

// prepare fetches the cached assets, builds the tests and writes the run's initramfs.
func prepare(t testing.TB, opts Options) (prepared, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return prepared{}, fmt.Errorf("the go command is needed to build the tests for the VM: %w", err)
	}
	root, err := moduleRoot(goTool)
	if err != nil {
		return prepared{}, err
	}
	a, err := loadAssets(root)
	if err != nil {
		return prepared{}, fmt.Errorf("prepare kernel and base initramfs: %w", err)
	}
	work := t.TempDir()
	buildStart := time.Now()
	bins, err := buildTests(goTool, root, opts.Package, opts.Tags, filepath.Join(work, "bin"))
	if err != nil {
		return prepared{}, err
	}
	buildTime := time.Since(buildStart)

	nonce, err := newNonce()
	if err != nil {
		return prepared{}, err
	}
	guestBins := make(map[string]string, len(bins))
	var order []string
	for _, b := range bins {
		g := path.Join(guestTestDir, filepath.Base(b))
		guestBins[g] = b
		order = append(order, g)
	}
	args := append([]string(nil), opts.Args...)
	if opts.Run != "" {
		args = append([]string{"-test.run=" + opts.Run}, args...)
	}
	timeout := capToDeadline(t, opts.Timeout)
	modules := append(DefaultModules(), opts.Modules...)
	var forwards []string
	if len(opts.HostForwards) > 0 {
		exe, err := os.Executable()
		if err != nil {
			return prepared{}, fmt.Errorf("HostForwards relay through the test binary: %w", err)
		}
		for _, f := range opts.HostForwards {
			forwards = append(forwards, fmt.Sprintf("tcp:%s-cmd:%s", f.Guest, relayCommand(exe, f.Host)))
		}
		modules = append(modules, guestNetworkModules...)
	}
	script := initScript{
		Nonce:    nonce,
		Modules:  modules,
		Env:      opts.Env,
		Binaries: order,
		Args:     args,
		Timeout:  innerTimeout(timeout),
		Network:  len(forwards) > 0,
	}
	initrd := filepath.Join(work, "initrd.img")
	if err := writeInitrd(initrd, initrdSpec{
		Base:       a.BaseInitramfs,
		Init:       []byte(script.render()),
		Binaries:   guestBins,
		ExtraFiles: opts.ExtraFiles,
	}); err != nil {
		return prepared{}, fmt.Errorf("write initramfs: %w", err)
	}
	return prepared{
		work:          work,
		kernelVersion: a.KernelVersion,
		buildTime:     buildTime,
		boot: bootSpec{
			Kernel:   a.Kernel,
			Initrd:   initrd,
			MemoryMB: opts.MemoryMB,
			CPUs:     opts.CPUs,
			Nonce:    nonce,
			Timeout:  timeout,
			Forwards: forwards,
		},
	}, nil
}

// report logs timings and turns the boot result into the test's verdict.
func report(t testing.TB, res bootResult, total time.Duration) {
	t.Helper()
	if res.BootedAfter > 0 {
		t.Logf("vm: reached /init %s after starting QEMU (guest uptime %ss)", res.BootedAfter.Round(time.Millisecond), res.GuestUptime)
	}
	for _, b := range res.Binaries {
		t.Logf("vm: %s exited %d after %s", b.Name, b.ExitCode, b.Duration.Round(time.Millisecond))
	}
	t.Logf("vm: total %s", total.Round(time.Millisecond))
	switch {
	case res.BootStuck:
		t.Errorf("vm: killed the VM: the kernel did not start /init within %s (see the console output above)", res.BootLimit)
	case res.TimedOut:
		t.Errorf("vm: killed the VM after its timeout; the console output above shows how far it got")
	case res.QEMUErr != nil && !res.HaveResult:
		t.Errorf("vm: %v\n%s", res.QEMUErr, res.QEMUStderr)
	case res.BootedAfter == 0:
		t.Errorf("vm: the kernel never reached /init (see the console output above)\n%s", res.QEMUStderr)
	case !res.HaveResult:
		t.Errorf("vm: the VM stopped without reporting a result: the test binary or /init crashed, or the kernel panicked (see the console output above)")
	case res.Result != 0:
		t.Errorf("vm: tests inside the VM failed (exit code %d); their output is above", res.Result)
	}
}

// skipReason explains why this host cannot run VM tests, or returns "".
func skipReason() string {
	switch {
	case InVM():
		return "vm: already inside the test VM; nested VMs are not supported"
	case runtime.GOOS != "linux" || runtime.GOARCH != "amd64":
		return fmt.Sprintf("vm: needs a linux/amd64 host, have %s/%s", runtime.GOOS, runtime.GOARCH)
	case os.Geteuid() != 0:
		return "vm: needs root (hack/vm-assets.sh installs Debian packages and builds a root-owned initramfs)"
	case testing.Short():
		return "vm: booting a VM takes several seconds; skipped in -short mode"
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return "vm: qemu-system-x86_64 not found; install the Debian package qemu-system-x86"
	}
	return ""
}

// capToDeadline shortens d so that the VM is killed, and the failure reported, before the
// enclosing `go test -timeout` panics the whole test binary.
func capToDeadline(t testing.TB, d time.Duration) time.Duration {
	dl, ok := t.(interface{ Deadline() (time.Time, bool) })
	if !ok {
		return d
	}
	deadline, ok := dl.Deadline()
	if !ok {
		return d
	}
	const margin, floor = 10 * time.Second, 10 * time.Second
	left := time.Until(deadline) - margin
	switch {
	case left >= d:
		return d
	case left < floor:
		return floor
	default:
		return left
	}
}

// newNonce returns a random marker suffix for one run.
func newNonce() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random marker: %w", err)
	}
	return hex.EncodeToString(b), nil
}
