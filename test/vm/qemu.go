package vm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// EnvAccel overrides QEMU's -accel value, e.g. "kvm" on a host where KVM works. The default is
// pure emulation (TCG), which works everywhere, including inside containers and other VMs.
const EnvAccel = "KPROXY_VM_ACCEL"

// EnvMachine overrides QEMU's -machine value. The default is "pc". The leaner "microvm"
// reaches /init about half a second sooner under TCG, but without HPET or ACPI PM timer the
// guest kernel can fail to calibrate its TSC on a loaded host and hang before /init.
const EnvMachine = "KPROXY_VM_MACHINE"

// envOr returns the environment variable key, or def when it is unset or empty.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// bootSpec is one QEMU invocation.
type bootSpec struct {
	Kernel   string
	Initrd   string
	MemoryMB int
	CPUs     int
	Nonce    string
	Console  io.Writer        // raw console copy (a file)
	Lines    chan<- string    // receives each cleaned console line; closed by boot
	Timeout  time.Duration    // QEMU is killed after this
	Forwards []string         // guestfwd rules ("tcp:IP:PORT-cmd:COMMAND"); none means no NIC
	Now      func() time.Time // for tests; nil means time.Now
}

// bootResult is what the host learned from the console.
type bootResult struct {
	BootedAfter time.Duration // host time from starting QEMU to the BOOTED marker
	GuestUptime string        // the guest's /proc/uptime at that marker, in seconds
	Result      int           // the RESULT marker's exit code, valid if HaveResult
	HaveResult  bool
	Binaries    []binaryResult
	TimedOut    bool // killed at the run's timeout
	BootStuck   bool // killed because /init did not start within BootLimit
	BootLimit   time.Duration
	QEMUErr     error  // QEMU's own failure, if any (not the tests')
	QEMUStderr  string // QEMU's diagnostics
}

// binaryResult is one test binary's exit code as /init reported it.
type binaryResult struct {
	Name     string
	ExitCode int
	Duration time.Duration
}

// qemuArgs builds the QEMU command line. There is no disk, and no network card unless the run
// forwards host ports: the tests build their topology from namespaces inside the VM.
func qemuArgs(s bootSpec) []string {
	nic := []string{"-nic", "none"}
	if len(s.Forwards) > 0 {
		// restrict=on isolates the guest from the host and the outside world; explicit
		// forwards are exempt. Each guestfwd runs its command per connection, with the
		// connection as stdin and stdout.
		netdev := "user,id=n0,restrict=on"
		for _, f := range s.Forwards {
			netdev += ",guestfwd=" + strings.ReplaceAll(f, ",", ",,")
		}
		nic = []string{"-netdev", netdev, "-device", "virtio-net-pci,netdev=n0,romfile="}
	}
	return append([]string{
		"-machine", envOr(EnvMachine, "pc"),
		"-accel", envOr(EnvAccel, "tcg"),
		"-m", strconv.Itoa(s.MemoryMB),
		"-smp", strconv.Itoa(s.CPUs),
		"-kernel", s.Kernel,
		"-initrd", s.Initrd,
		"-append", "console=ttyS0 panic=-1 quiet",
		"-nographic",
		"-no-reboot",
		"-vga", "none", // saves the VGA option ROM's start-up; the console is the serial port
	}, nic...)
}

// boot runs QEMU until the guest powers off or the timeout expires and parses the console.
func boot(ctx context.Context, s bootSpec) bootResult {
	defer close(s.Lines)
	now := s.Now
	if now == nil {
		now = time.Now
	}
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()

	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", qemuArgs(s)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdin = nil
	// If QEMU leaves a child holding the console pipe, do not wait for it forever.
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return bootResult{QEMUErr: fmt.Errorf("qemu stdout: %w", err)}
	}
	start := now()
	if err := cmd.Start(); err != nil {
		return bootResult{QEMUErr: fmt.Errorf("start qemu-system-x86_64: %w", err)}
	}
	// A guest stuck before /init (a firmware or clock problem) would otherwise use up the
	// whole run's timeout; give up on it early.
	var booted, stuck atomic.Bool
	bootTimer := time.AfterFunc(bootLimit(s.Timeout), func() {
		if !booted.Load() {
			stuck.Store(true)
			cancel()
		}
	})
	defer bootTimer.Stop()
	p := consoleParser{nonce: s.Nonce, start: start, now: now}
	r := io.TeeReader(stdout, s.Console)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := cleanConsoleLine(sc.Text())
		if line == "" {
			continue
		}
		if !p.parse(line) {
			s.Lines <- line
		}
		if p.result.BootedAfter > 0 {
			booted.Store(true)
		}
	}
	if err := sc.Err(); err != nil {
		// Keep draining, or QEMU blocks on a full pipe until the timeout.
		s.Lines <- fmt.Sprintf("vm: console unreadable from here on (%v); see the console log", err)
		_, _ = io.Copy(io.Discard, r)
	}
	waitErr := cmd.Wait()
	res := p.result
	res.QEMUStderr = strings.TrimSpace(stderr.String())
	switch {
	case stuck.Load():
		res.BootStuck, res.BootLimit = true, bootLimit(s.Timeout)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		res.TimedOut = true
	case waitErr != nil:
		res.QEMUErr = fmt.Errorf("qemu-system-x86_64: %w", waitErr)
	}
	return res
}

// bootLimit is how long the guest may take to reach /init: far more than the few seconds it
// needs even on a loaded host, but less than a whole run.
func bootLimit(timeout time.Duration) time.Duration {
	const limit = 90 * time.Second
	if timeout < limit {
		return timeout
	}
	return limit
}

// consoleParser recognises /init's marker lines.
type consoleParser struct {
	nonce   string
	start   time.Time
	now     func() time.Time
	current string
	began   time.Time
	result  bootResult
}

// parse consumes line if it is a marker (and reports true), else leaves it to the caller.
// Markers are matched anywhere in the line: kernel messages can share a line with them.
func (p *consoleParser) parse(line string) bool {
	m := marker(p.nonce)
	i := strings.Index(line, m+" ")
	if i < 0 {
		return false
	}
	f := strings.Fields(line[i+len(m):])
	if len(f) == 0 {
		return false
	}
	switch f[0] {
	case markBooted:
		p.result.BootedAfter = p.now().Sub(p.start)
		if len(f) > 1 {
			p.result.GuestUptime = f[1]
		}
	case markStart:
		if len(f) > 1 {
			p.current, p.began = f[1], p.now()
		}
	case markExit:
		if len(f) > 2 {
			code, err := strconv.Atoi(f[2])
			if err != nil {
				return false
			}
			p.result.Binaries = append(p.result.Binaries, binaryResult{Name: f[1], ExitCode: code, Duration: p.now().Sub(p.began)})
		}
	case markResult:
		if len(f) > 1 {
			code, err := strconv.Atoi(f[1])
			if err != nil {
				return false
			}
			p.result.Result, p.result.HaveResult = code, true
		}
	default:
		return false
	}
	return true
}

// ansiRE matches the terminal control sequences the firmware prints.
var ansiRE = regexp.MustCompile(`\x1b(\[[0-9;?]*[A-Za-z]|[A-Za-z])`)

// cleanConsoleLine strips carriage returns, terminal control sequences and other
// non-printable bytes, which would garble the test log.
func cleanConsoleLine(s string) string {
	s = ansiRE.ReplaceAllString(s, "")
	s = strings.Map(func(r rune) rune {
		if r == '\t' || r >= ' ' && r != 0x7f {
			return r
		}
		return -1
	}, s)
	return strings.TrimRight(s, " ")
}
