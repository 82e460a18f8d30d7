package vm_test

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/kproxy/kproxy/test/vm"
)

// TestSelfTest boots the VM with the selftest package: a dummy kube-ipvs0, IPVS virtual and
// real servers, TCP traffic through a ClusterIP into pod namespaces, the iptables, ipset
// and conntrack binaries, and connections to a host echo server through HostForwards. It
// proves the harness end to end.
func TestSelfTest(t *testing.T) {
	t.Parallel()
	echo := echoServer(t)
	guest := netip.MustParseAddrPort("10.0.2.100:7000")
	vm.Run(t, vm.Options{
		Package:      "./test/vm/selftest",
		Timeout:      2 * time.Minute,
		Env:          map[string]string{"KPROXY_SELFTEST": "it's quoted", "KPROXY_SELFTEST_FORWARD": guest.String()},
		HostForwards: []vm.HostForward{{Guest: guest, Host: echo}},
	})
}

// echoServer listens on the host's loopback and answers each connection with "echo: " and
// everything it read, once the client has closed its side.
func echoServer(t *testing.T) netip.AddrPort {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(time.Minute))
				b, err := io.ReadAll(c)
				if err == nil {
					_, _ = io.WriteString(c, "echo: "+string(b))
				}
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// TestFailureIsReported checks the other half of the contract: a test failing inside the VM
// fails the host test. It runs the harness against a sub-test whose failure is expected.
func TestFailureIsReported(t *testing.T) {
	t.Parallel()
	ft := &fakeT{TB: t}
	vm.Run(ft, vm.Options{
		Package: "./test/vm/selftest",
		Run:     "TestAlwaysFailsInVM",
		Timeout: time.Minute,
		Env:     map[string]string{"KPROXY_SELFTEST_FAIL": "1"},
	})
	if ft.Skipped() {
		t.SkipNow()
	}
	if !ft.failed {
		t.Fatal("a failing test inside the VM did not fail the host test")
	}
}

// TestTimeoutKillsVM checks that a VM which never finishes is killed at Options.Timeout and
// fails the host test, instead of hanging it.
func TestTimeoutKillsVM(t *testing.T) {
	t.Parallel()
	ft := &fakeT{TB: t}
	const timeout = 10 * time.Second
	start := time.Now()
	vm.Run(ft, vm.Options{
		Package: "./test/vm/selftest",
		Run:     "TestHangsInVM",
		// The last -test.timeout wins: disable Go's own timeout so that only the host's
		// kill can end this run.
		Args:    []string{"-test.timeout=0"},
		Timeout: timeout,
		Env:     map[string]string{"KPROXY_SELFTEST_HANG": "1"},
	})
	if ft.Skipped() {
		t.SkipNow()
	}
	if !ft.failed {
		t.Fatal("a hung VM did not fail the host test")
	}
	// The build happens before the clock for the VM starts; allow for it.
	if took := time.Since(start); took > timeout+30*time.Second {
		t.Fatalf("the hung VM was killed only after %s, timeout %s", took, timeout)
	}
}

// fakeT records failures instead of failing, so a deliberately failing VM run can be asserted.
type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Errorf(format string, args ...any) {
	f.failed = true
	f.TB.Logf("(expected) "+format, args...)
}
func (f *fakeT) Error(args ...any) {
	f.failed = true
	f.TB.Log(append([]any{"(expected)"}, args...)...)
}
func (f *fakeT) Fail()        { f.failed = true }
func (f *fakeT) Failed() bool { return f.failed }
