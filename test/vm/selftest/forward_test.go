//go:build vmtest

package selftest

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/kproxy/kproxy/test/vm"
)

// TestHostForward connects, several times and concurrently, to the host echo server that
// vm_test.go's TestSelfTest forwards into the VM (vm.Options.HostForwards), and checks that
// every connection gets its own bytes back, half-close included.
func TestHostForward(t *testing.T) {
	vm.SkipUnlessInVM(t)
	addr := os.Getenv("KPROXY_SELFTEST_FORWARD")
	if addr == "" {
		t.Skip("KPROXY_SELFTEST_FORWARD not set by this run")
	}
	echo := func(i int) error {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		msg := fmt.Sprintf("hello %d from the VM", i)
		if _, err := io.WriteString(c, msg); err != nil {
			return err
		}
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			return err
		}
		got, err := io.ReadAll(c)
		if err != nil {
			return err
		}
		if string(got) != "echo: "+msg {
			return fmt.Errorf("connection %d: got %q", i, got)
		}
		return nil
	}
	if err := echo(0); err != nil {
		t.Fatalf("first connection: %v", err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 1; i <= 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- echo(i)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}
