package vm

import (
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestHostForwardValidation(t *testing.T) {
	ap := netip.MustParseAddrPort
	ok := HostForward{Guest: ap("10.0.2.100:6443"), Host: ap("127.0.0.1:36443")}
	if _, err := (Options{Package: "./x", HostForwards: []HostForward{ok}}).withDefaults(); err != nil {
		t.Errorf("valid forward rejected: %v", err)
	}
	for _, tc := range []struct {
		name string
		fwds []HostForward
		want string
	}{
		{"guest outside the network", []HostForward{{Guest: ap("192.168.1.1:80"), Host: ok.Host}}, "must be an address:port in 10.0.2.0/24"},
		{"guest's own address", []HostForward{{Guest: ap("10.0.2.15:80"), Host: ok.Host}}, "reserved"},
		{"QEMU's gateway", []HostForward{{Guest: ap("10.0.2.2:80"), Host: ok.Host}}, "reserved"},
		{"no port", []HostForward{{Guest: ap("10.0.2.100:0"), Host: ok.Host}}, "must be an address:port"},
		{"host off loopback", []HostForward{{Guest: ok.Guest, Host: ap("192.0.2.1:80")}}, "loopback"},
		{"IPv6 host", []HostForward{{Guest: ok.Guest, Host: ap("[::1]:80")}}, "IPv4 loopback"},
		{"twice", []HostForward{ok, ok}, "forwarded twice"},
	} {
		_, err := (Options{Package: "./x", HostForwards: tc.fwds}).withDefaults()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

func TestQEMUNetworkArgs(t *testing.T) {
	args := qemuArgs(bootSpec{MemoryMB: 512, CPUs: 1})
	if i := slices.Index(args, "-nic"); i < 0 || args[i+1] != "none" || slices.Contains(args, "-netdev") {
		t.Errorf("without forwards the VM must have no NIC: %q", args)
	}
	args = qemuArgs(bootSpec{MemoryMB: 512, CPUs: 1, Forwards: []string{
		"tcp:10.0.2.100:6443-cmd:/tmp/a,b.test -kproxy-vm-relay=127.0.0.1:1234",
		"tcp:10.0.2.101:80-cmd:/tmp/x.test -kproxy-vm-relay=127.0.0.1:80",
	}})
	i := slices.Index(args, "-netdev")
	if i < 0 || slices.Contains(args, "-nic") {
		t.Fatalf("no -netdev, or -nic none left: %q", args)
	}
	want := "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:6443-cmd:/tmp/a,,b.test -kproxy-vm-relay=127.0.0.1:1234," +
		"guestfwd=tcp:10.0.2.101:80-cmd:/tmp/x.test -kproxy-vm-relay=127.0.0.1:80"
	if args[i+1] != want {
		t.Errorf("-netdev %s\nwant    %s", args[i+1], want)
	}
	if j := slices.Index(args, "-device"); j < 0 || !strings.HasPrefix(args[j+1], "virtio-net-pci,netdev=n0") {
		t.Errorf("no virtio-net device: %q", args)
	}
}

func TestInitScriptNetwork(t *testing.T) {
	s := initScript{Nonce: "n", Network: true}.render()
	if !strings.Contains(s, "ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0") {
		t.Errorf("eth0 is not configured:\n%s", s)
	}
	if strings.Contains(initScript{Nonce: "n"}.render(), "eth0") {
		t.Error("eth0 configured without forwards")
	}
}

// TestRelay runs the relay as QEMU does: this test binary with the relay flag, the guest's
// connection (here one end of a socket pair) as stdin and stdout.
func TestRelay(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		_, _ = c.Write(append([]byte("echo: "), b...))
	}()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	guestSide, qemuSide := os.NewFile(uintptr(fds[0]), "guest"), os.NewFile(uintptr(fds[1]), "qemu")
	defer guestSide.Close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmdline := strings.Fields(relayCommand(exe, netip.MustParseAddrPort(ln.Addr().String())))
	cmd := exec.Command(cmdline[0], cmdline[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = qemuSide, qemuSide, qemuSide
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	qemuSide.Close()
	guest, err := net.FileConn(guestSide)
	if err != nil {
		t.Fatal(err)
	}
	defer guest.Close()
	_ = guest.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(guest, "ping"); err != nil {
		t.Fatal(err)
	}
	_ = guest.(*net.UnixConn).CloseWrite()
	got, err := io.ReadAll(guest)
	if err != nil || string(got) != "echo: ping" {
		t.Errorf("through the relay: %q, %v", got, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("relay exited: %v", err)
	}
}
