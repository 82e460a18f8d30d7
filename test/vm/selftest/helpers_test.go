//go:build vmtest

package selftest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// pod is a network namespace joined to the VM's root namespace by a veth pair, with a TCP
// server answering every connection with the pod's name.
type pod struct {
	name string
	ip   net.IP
	ns   netns.NsHandle
}

// podOptions describes one pod's addressing: the pod gets <subnet>.2/24 on eth0 and a default
// route via <subnet>.1, which the root side of the veth holds.
type podOptions struct {
	Name   string // also the root-side veth name and the server's answer
	Subnet string // first three octets, e.g. "10.244.1"
	Port   int    // the server's TCP port
}

// newPod creates the namespace, links, addresses, routes and server, and removes them all
// when the test ends.
func newPod(t *testing.T, o podOptions) *pod {
	t.Helper()
	p := &pod{name: o.Name, ip: net.ParseIP(o.Subnet + ".2").To4()}

	var ln net.Listener
	ns, err := inNewNetns(func() error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", o.Port))
		return err
	})
	if err != nil {
		t.Fatalf("pod %s: %v", o.Name, err)
	}
	p.ns = ns
	t.Cleanup(func() { ns.Close() })
	t.Cleanup(func() { ln.Close() })
	go serveName(ln, o.Name)

	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: o.Name},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(ns)),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("pod %s: add veth: %v", o.Name, err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(veth) })
	mustAddrUp(t, &netlink.Handle{}, o.Name, o.Subnet+".1/24")

	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatalf("pod %s: netlink handle in namespace: %v", o.Name, err)
	}
	defer h.Close()
	mustAddrUp(t, h, "eth0", o.Subnet+".2/24")
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatalf("pod %s: %v", o.Name, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatalf("pod %s: lo up: %v", o.Name, err)
	}
	if err := h.RouteAdd(&netlink.Route{Gw: net.ParseIP(o.Subnet + ".1")}); err != nil {
		t.Fatalf("pod %s: default route: %v", o.Name, err)
	}
	return p
}

// inNewNetns runs fn on an OS thread moved into a new network namespace and returns a handle
// to it. The thread stays locked and dies with its goroutine, so no other goroutine ever runs
// in the wrong namespace; sockets fn opens stay in the new namespace.
func inNewNetns(fn func() error) (netns.NsHandle, error) {
	type result struct {
		ns  netns.NsHandle
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked on purpose: the thread is discarded
		ns, err := netns.New()
		if err != nil {
			ch <- result{err: fmt.Errorf("new network namespace: %w", err)}
			return
		}
		if err := fn(); err != nil {
			ns.Close()
			ch <- result{err: err}
			return
		}
		ch <- result{ns: ns}
	}()
	r := <-ch
	return r.ns, r.err
}

// mustAddrUp adds cidr to the link called name and sets it up, through h (the zero Handle is
// the current namespace).
func mustAddrUp(t *testing.T, h *netlink.Handle, name, cidr string) netlink.Link {
	t.Helper()
	link, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("find link %s: %v", name, err)
	}
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatalf("parse %s: %v", cidr, err)
	}
	if err := h.AddrAdd(link, addr); err != nil {
		t.Fatalf("add %s to %s: %v", cidr, name, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		t.Fatalf("set %s up: %v", name, err)
	}
	return link
}

// serveName answers each connection on ln with name and a newline.
func serveName(ln net.Listener, name string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = fmt.Fprintln(c, name)
		_ = c.Close()
	}
}

// ask connects to addr and returns the first line the server sends.
func ask(addr string) (string, error) {
	c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return strings.TrimSpace(line), fmt.Errorf("read from %s: %w", addr, err)
	}
	return strings.TrimSpace(line), nil
}

// addDummy creates a dummy link holding the given addresses, like kube-proxy's kube-ipvs0,
// and deletes it when the test ends.
func addDummy(t *testing.T, name string, cidrs ...string) netlink.Link {
	t.Helper()
	d := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := netlink.LinkAdd(d); err != nil {
		t.Fatalf("add dummy %s: %v", name, err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(d) })
	var link netlink.Link
	for _, c := range cidrs {
		link = mustAddrUp(t, &netlink.Handle{}, name, c)
	}
	if link == nil {
		link = d
	}
	return link
}

// run executes a command from the VM's PATH and returns its combined output, failing the test
// if it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	t.Logf("$ %s %s\n%s", name, strings.Join(args, " "), out)
	return string(out)
}
