package netns

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

func TestCloseRemovesEverything(t *testing.T) {
	RequireRoot(t)
	topo, err := Build(DefaultSpec())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = topo.Close() }) // in case the test fails before its own Close

	serveAll(t, topo.Pods())
	client := topo.Clients[0]
	conn, err := client.OpenTCP(t.Context(), topo.Node.Pods[0].AddrPort(V4, tcpPort), probeTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exchange(probeTimeout); err != nil {
		t.Fatal(err)
	}

	// A witness namespace outside the topology gets a veth into every topology namespace.
	// The kernel deletes a veth pair when either end's namespace is destroyed, so the
	// witness's ends vanishing proves nothing pinned a namespace after Close.
	witness := NewNS(t, "witness")
	type record struct{ name, path, link string }
	var recs []record
	for i, n := range topo.Namespaces() {
		recs = append(recs, record{n.Name, n.Path(), nsLink(nsInode(t, n.Path()))})
		if err := witness.addVeth("w"+strconv.Itoa(i), n, "witness"); err != nil {
			t.Fatal(err)
		}
	}

	if err := topo.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := topo.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	for _, r := range recs {
		if _, err := os.Stat(r.path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists (%v)", r.path, err)
		}
		if m := mountedUnder(t, r.name); len(m) > 0 {
			t.Errorf("%s still mounted: %v", r.name, m)
		}
	}
	// Nothing in this process may still pin a namespace: no open handle, no thread.
	refs := map[string]bool{}
	for _, r := range recs {
		refs[r.link] = true
	}
	for _, dir := range []string{"/proc/self/fd", "/proc/self/task"} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			if dir == "/proc/self/task" {
				p = filepath.Join(p, "ns", "net")
			}
			if l, err := os.Readlink(p); err == nil && refs[l] {
				t.Errorf("%s still refers to closed namespace %s", p, l)
			}
		}
	}
	if ents, err := os.ReadDir(RunDir); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "kp"+topo.ID) {
				t.Errorf("leftover %s", filepath.Join(RunDir, e.Name()))
			}
		}
	}

	start := time.Now()
	for {
		var links []netlink.Link
		err := witness.Netlink(func(h *netlink.Handle) error {
			var err error
			links, err = h.LinkList()
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(links) == 1 { // only loopback left
			t.Logf("all %d namespaces destroyed %v after Close", len(recs), time.Since(start))
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("%d namespaces still alive 10s after Close", len(links)-1)
		}
		time.Sleep(10 * time.Millisecond)
	}

	if err := topo.Node.Do(func() error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Do after Close: got %v, want ErrClosed", err)
	}
	// A closed netlink handle would act on the caller's namespace; it must never be used.
	if err := topo.Node.Netlink(func(*netlink.Handle) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Netlink after Close: got %v, want ErrClosed", err)
	}
	if err := topo.Node.LinkUp("lo"); !errors.Is(err, ErrClosed) {
		t.Errorf("LinkUp after Close: got %v, want ErrClosed", err)
	}
	if _, err := topo.Node.ServeTCP(tcpPort); !errors.Is(err, ErrClosed) {
		t.Errorf("ServeTCP after Close: got %v, want ErrClosed", err)
	}
	if _, err := conn.Exchange(time.Second); err == nil {
		t.Error("long-lived connection survived Close")
	}
	if err := conn.Close(); err != nil {
		t.Errorf("closing an already closed connection: %v", err)
	}
}

func TestBuildFailureCleansUp(t *testing.T) {
	RequireRoot(t)
	if _, err := Build(Spec{LocalPods: maxPods + 1}); err == nil {
		t.Fatal("oversized spec accepted")
	}
	// A taken name must fail cleanly, without touching the existing namespace.
	n := NewNS(t, "taken")
	if _, err := Create(NSOptions{Label: "x", Name: n.Name}); !errors.Is(err, os.ErrExist) {
		t.Fatalf("duplicate name: got %v, want ErrExist", err)
	}
	if err := n.Do(func() error { return nil }); err != nil {
		t.Fatalf("existing namespace broken by the failed create: %v", err)
	}
	if _, err := Create(NSOptions{Label: "has space"}); err == nil {
		t.Fatal("label with a space accepted")
	}
}

func TestParallelTopologies(t *testing.T) {
	RequireRoot(t)
	const n = 3
	topos := make([]*Topology, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { topos[i], errs[i] = Build(Spec{LocalPods: 1, RemotePods: 1, Clients: 1}) })
	}
	wg.Wait()
	for _, topo := range topos {
		if topo != nil {
			t.Cleanup(func() {
				if err := topo.Close(); err != nil {
					t.Error(err)
				}
			})
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, topo := range topos {
		if ids[topo.ID] {
			t.Fatalf("duplicate topology id %s", topo.ID)
		}
		ids[topo.ID] = true
		serveAll(t, topo.Pods())
	}
	for _, topo := range topos {
		for _, f := range Families {
			wantReply(t, topo.Clients[0].DialTCP, topo.Remote.Pods[0].AddrPort(f, tcpPort), "remote-0", topo.Clients[0].IP(f))
		}
	}
}

func BenchmarkBuild(b *testing.B) {
	RequireRoot(b)
	for b.Loop() {
		topo, err := Build(DefaultSpec())
		if err != nil {
			b.Fatal(err)
		}
		if err := topo.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
