package vm

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
)

// relayFlag is the only argument of a process QEMU starts for one forwarded connection: the
// host test binary itself (see init). Its stdin and stdout are the guest's connection.
const relayFlag = "-kproxy-vm-relay"

// Every binary importing this package doubles as the relay behind Options.HostForwards: QEMU's
// guestfwd runs a command per guest connection, and the host test binary is the one command
// known to exist. The relay runs before any test code and exits.
func init() {
	if len(os.Args) == 2 && strings.HasPrefix(os.Args[1], relayFlag+"=") {
		os.Exit(relay(strings.TrimPrefix(os.Args[1], relayFlag+"=")))
	}
}

// relayCommand is the guestfwd command for a forward to host.
func relayCommand(exe string, host netip.AddrPort) string {
	return fmt.Sprintf("%s %s=%s", exe, relayFlag, host)
}

// relay copies between the guest's connection (stdin/stdout, one socket QEMU passes in; stderr
// is the same socket, so nothing may be printed) and a new connection to target, passing on
// half-closes, until both directions end.
func relay(target string) int {
	guest, err := net.FileConn(os.Stdin)
	if err != nil {
		return 1
	}
	defer guest.Close()
	host, err := net.DialTimeout("tcp", target, 10*time.Second)
	if err != nil {
		return 1
	}
	defer host.Close()
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = dst.Close()
		}
	}
	wg.Add(2)
	go pipe(host, guest)
	go pipe(guest, host)
	wg.Wait()
	return 0
}
