package ipvs

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"syscall"
	"testing"

	"github.com/kproxy/kproxy/proxier"
)

// kernelConformance exercises a Kernel the way the proxier uses it and checks the
// answers, errnos included. It runs against the Fake here and against Netlink on a
// real kernel in the VM tests (vm_test.go), which is what keeps the Fake honest. k must
// start empty (a fresh network namespace).
func kernelConformance(t *testing.T, k Kernel) {
	ctx := context.Background()
	mustErrno := func(t *testing.T, what string, err error, errno syscall.Errno, class error) {
		t.Helper()
		if !errors.Is(err, errno) || !errors.Is(err, class) {
			t.Errorf("%s: got %v, want %v (%v)", what, err, errno, class)
		}
		var ke *KernelError
		if err != nil && !errors.As(err, &ke) {
			t.Errorf("%s: %T is not a *KernelError", what, err)
		}
	}
	must := func(t *testing.T, what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	t.Run("virtual servers", func(t *testing.T) {
		vs := vsOf("10.96.0.1:80/tcp")
		must(t, "add", k.AddVirtualServer(ctx, vs))
		t.Cleanup(func() { _ = k.DeleteVirtualServer(ctx, vs.VSKey) })
		mustErrno(t, "add twice", k.AddVirtualServer(ctx, vs), syscall.EEXIST, ErrExist)

		sticky := vsOf("10.96.0.2:443/udp")
		sticky.Scheduler, sticky.Flags, sticky.Timeout = "mh", FlagPersistent|FlagSourceHash, 10800
		must(t, "add persistent", k.AddVirtualServer(ctx, sticky))
		t.Cleanup(func() { _ = k.DeleteVirtualServer(ctx, sticky.VSKey) })
		v6 := vsOf("[fd00:96::1]:53/sctp")
		must(t, "add IPv6", k.AddVirtualServer(ctx, v6))
		t.Cleanup(func() { _ = k.DeleteVirtualServer(ctx, v6.VSKey) })

		got, err := k.VirtualServers(ctx, proxier.IPv4)
		must(t, "list", err)
		slices.SortFunc(got, func(a, b *VirtualServer) int { return a.VSKey.Compare(b.VSKey) })
		if len(got) != 2 || !got[0].SameAttrs(vs) || !got[1].SameAttrs(sticky) {
			t.Errorf("IPv4 virtual servers read back as %v, want %v and %v", got, vs, sticky)
		}
		got6, err := k.VirtualServers(ctx, proxier.IPv6)
		must(t, "list IPv6", err)
		if len(got6) != 1 || !got6[0].SameAttrs(v6) {
			t.Errorf("IPv6 virtual servers read back as %v, want %v", got6, v6)
		}

		upd := vs.Clone()
		upd.Scheduler = "wlc"
		must(t, "update", k.UpdateVirtualServer(ctx, upd))
		got, _ = k.VirtualServers(ctx, proxier.IPv4)
		if i := slices.IndexFunc(got, func(v *VirtualServer) bool { return v.VSKey == vs.VSKey }); i < 0 || got[i].Scheduler != "wlc" {
			t.Errorf("scheduler not updated: %v", got)
		}

		bad := vsOf("10.96.0.3:80/tcp")
		bad.Scheduler = "nosuchsched"
		mustErrno(t, "unknown scheduler", k.AddVirtualServer(ctx, bad), syscall.ENOENT, ErrNotFound)
		missing := vsOf("10.96.0.4:80/tcp")
		mustErrno(t, "update missing", k.UpdateVirtualServer(ctx, missing), syscall.ESRCH, ErrNotFound)
		mustErrno(t, "delete missing", k.DeleteVirtualServer(ctx, missing.VSKey), syscall.ESRCH, ErrNotFound)
		if reals, err := k.RealServers(ctx, missing.VSKey); err != nil || len(reals) != 0 {
			t.Errorf("real servers of a missing virtual server: %v, %v; want none, no error (the kernel's dump finds nothing)", reals, err)
		}
	})

	t.Run("real servers", func(t *testing.T) {
		vs := vsOf("10.96.1.1:80/tcp")
		missing := vsOf("10.96.1.2:80/tcp")
		must(t, "add virtual server", k.AddVirtualServer(ctx, vs))
		t.Cleanup(func() { _ = k.DeleteVirtualServer(ctx, vs.VSKey) })
		a := RealServer{Addr: netip.MustParseAddrPort("10.244.2.6:8080"), Weight: 1}
		b := RealServer{Addr: netip.MustParseAddrPort("10.244.2.5:8080"), Weight: 1}
		must(t, "add a", k.AddRealServer(ctx, vs.VSKey, a))
		must(t, "add b", k.AddRealServer(ctx, vs.VSKey, b))
		mustErrno(t, "add twice", k.AddRealServer(ctx, vs.VSKey, a), syscall.EEXIST, ErrExist)
		mustErrno(t, "add to missing", k.AddRealServer(ctx, missing.VSKey, a), syscall.ESRCH, ErrNotFound)
		mustErrno(t, "wrong family", k.AddRealServer(ctx, vs.VSKey, RealServer{Addr: netip.MustParseAddrPort("[fd00::5]:80"), Weight: 1}),
			syscall.EINVAL, ErrInvalid)

		drained := a
		drained.Weight = 0
		must(t, "drain", k.UpdateRealServer(ctx, vs.VSKey, drained))
		reals, err := k.RealServers(ctx, vs.VSKey)
		must(t, "list", err)
		want := []RealServer{b, drained}
		if len(reals) != 2 || reals[0].Addr != want[0].Addr || reals[0].Weight != 1 || reals[1].Addr != want[1].Addr || reals[1].Weight != 0 {
			t.Errorf("real servers read back as %v, want %v sorted", reals, want)
		}
		for _, r := range reals {
			if r.ActiveConns != 0 || r.InactiveConns != 0 {
				t.Errorf("fresh real server %v has connections", r)
			}
		}
		mustErrno(t, "update missing", k.UpdateRealServer(ctx, vs.VSKey, RealServer{Addr: netip.MustParseAddrPort("10.244.2.9:80"), Weight: 1}),
			syscall.ENOENT, ErrNotFound)
		must(t, "delete", k.DeleteRealServer(ctx, vs.VSKey, a.Addr))
		mustErrno(t, "delete twice", k.DeleteRealServer(ctx, vs.VSKey, a.Addr), syscall.ENOENT, ErrNotFound)

		v6 := vsOf("[fd00:96::2]:80/tcp")
		must(t, "add IPv6 virtual server", k.AddVirtualServer(ctx, v6))
		t.Cleanup(func() { _ = k.DeleteVirtualServer(ctx, v6.VSKey) })
		must(t, "add IPv6 real server", k.AddRealServer(ctx, v6.VSKey, RealServer{Addr: netip.MustParseAddrPort("[fd00:244::5]:8080"), Weight: 1}))
		reals, err = k.RealServers(ctx, v6.VSKey)
		must(t, "list IPv6", err)
		if len(reals) != 1 || reals[0].Addr.String() != "[fd00:244::5]:8080" {
			t.Errorf("IPv6 real servers read back as %v", reals)
		}

		must(t, "delete virtual server with real servers", k.DeleteVirtualServer(ctx, vs.VSKey))
		if reals, err := k.RealServers(ctx, vs.VSKey); err != nil || len(reals) != 0 {
			t.Errorf("real servers of a deleted virtual server: %v, %v", reals, err)
		}
	})

	t.Run("device and addresses", func(t *testing.T) {
		addr := netip.MustParseAddr("10.96.2.1")
		addr6 := netip.MustParseAddr("fd00:96::21")
		if _, exists, err := k.DeviceAddresses(ctx, proxier.IPv4); err != nil || exists {
			t.Fatalf("fresh kernel: device exists=%v err=%v", exists, err)
		}
		mustErrno(t, "bind without device", k.AddAddress(ctx, addr), syscall.ENODEV, ErrNotFound)
		created, err := k.EnsureDevice(ctx)
		must(t, "ensure", err)
		t.Cleanup(func() { _ = k.DeleteDevice(ctx) })
		if !created {
			t.Errorf("EnsureDevice reported an existing device in a fresh kernel")
		}
		if created, err := k.EnsureDevice(ctx); err != nil || created {
			t.Errorf("second EnsureDevice: created=%v err=%v", created, err)
		}
		must(t, "bind", k.AddAddress(ctx, addr))
		must(t, "bind IPv6", k.AddAddress(ctx, addr6))
		mustErrno(t, "bind twice", k.AddAddress(ctx, addr), syscall.EEXIST, ErrExist)
		got, exists, err := k.DeviceAddresses(ctx, proxier.IPv4)
		must(t, "list", err)
		if !exists || !slices.Equal(got, []netip.Addr{addr}) {
			t.Errorf("IPv4 device addresses: %v exists=%v, want [%s]", got, exists, addr)
		}
		got, _, _ = k.DeviceAddresses(ctx, proxier.IPv6)
		if !slices.Equal(got, []netip.Addr{addr6}) {
			t.Errorf("IPv6 device addresses: %v, want [%s]", got, addr6)
		}
		host, err := k.HostAddresses(ctx, proxier.IPv4)
		must(t, "host addresses", err)
		if slices.Contains(host, addr) {
			t.Errorf("host addresses %v include the kube-ipvs0 address %s", host, addr)
		}
		must(t, "unbind", k.DeleteAddress(ctx, addr))
		mustErrno(t, "unbind twice", k.DeleteAddress(ctx, addr), syscall.EADDRNOTAVAIL, ErrNotFound)
		must(t, "delete device", k.DeleteDevice(ctx))
		must(t, "delete device twice", k.DeleteDevice(ctx))
		if _, exists, _ := k.DeviceAddresses(ctx, proxier.IPv6); exists {
			t.Errorf("device still exists after DeleteDevice")
		}
	})

	t.Run("ipsets", func(t *testing.T) {
		ip := netip.MustParseAddr("10.96.3.1")
		tcp, udp, sctp := proxier.ProtocolTCP, proxier.ProtocolUDP, proxier.ProtocolSCTP
		members := map[SetType][]SetEntry{
			HashIP:        {{IP: ip}},
			HashIPPort:    {{IP: ip, Protocol: tcp, Port: 80}, {IP: ip, Protocol: udp, Port: 53}, {IP: ip, Protocol: sctp, Port: 9}},
			HashIPPortIP:  {{IP: ip, Protocol: tcp, Port: 8080, IP2: ip}},
			HashIPPortNet: {{IP: ip, Protocol: tcp, Port: 443, Net: netip.MustParsePrefix("203.0.113.0/24")}},
			BitmapPort:    {{Port: 30080}, {Port: 31000}},
		}
		for typ, entries := range members {
			t.Run(string(typ), func(t *testing.T) {
				name := "KPROXY-TEST-" + string(typ)
				name = name[:min(len(name), maxSetName)]
				spec := SetSpec{Name: name, Type: typ, Family: proxier.IPv4}
				must(t, "create "+name, k.CreateSet(ctx, spec))
				t.Cleanup(func() { _ = k.DestroySet(ctx, name) })
				mustErrno(t, "create twice", k.CreateSet(ctx, spec), syscall.EEXIST, ErrExist)
				for _, e := range entries {
					must(t, "add "+e.String(), k.AddEntry(ctx, name, e))
				}
				mustErrno(t, "add twice", k.AddEntry(ctx, name, entries[0]), syscall.EEXIST, ErrExist)
				c, err := k.ListSet(ctx, name)
				must(t, "list", err)
				slices.SortFunc(c.Entries, SetEntry.Compare)
				want := slices.SortedFunc(slices.Values(entries), SetEntry.Compare)
				if c.Type != typ || !slices.Equal(c.Entries, want) {
					t.Errorf("%s read back as %s %v, want %s %v", name, c.Type, c.Entries, typ, want)
				}
				must(t, "delete", k.DeleteEntry(ctx, name, entries[0]))
				mustErrno(t, "delete twice", k.DeleteEntry(ctx, name, entries[0]), syscall.ENOENT, ErrNotFound)
			})
		}
		v6 := SetSpec{Name: "KPROXY-TEST-6", Type: HashIPPort, Family: proxier.IPv6}
		must(t, "create IPv6", k.CreateSet(ctx, v6))
		t.Cleanup(func() { _ = k.DestroySet(ctx, v6.Name) })
		e6 := SetEntry{IP: netip.MustParseAddr("fd00:96::1"), Protocol: tcp, Port: 80}
		must(t, "add IPv6 member", k.AddEntry(ctx, v6.Name, e6))
		if err := k.AddEntry(ctx, v6.Name, SetEntry{IP: ip, Protocol: tcp, Port: 80}); err == nil {
			t.Errorf("IPv4 member accepted by an IPv6 set")
		}
		c, err := k.ListSet(ctx, v6.Name)
		must(t, "list IPv6", err)
		if c.Family != proxier.IPv6 || !slices.Equal(c.Entries, []SetEntry{e6}) {
			t.Errorf("IPv6 set read back as %+v", c)
		}
		_, err = k.ListSet(ctx, "KPROXY-NO-SUCH-SET")
		mustErrno(t, "list missing", err, syscall.ENOENT, ErrNotFound)
		mustErrno(t, "add to missing", k.AddEntry(ctx, "KPROXY-NO-SUCH-SET", e6), syscall.ENOENT, ErrNotFound)
		must(t, "destroy", k.DestroySet(ctx, v6.Name))
		must(t, "destroy twice", k.DestroySet(ctx, v6.Name))
	})

	t.Run("batches", func(t *testing.T) {
		b, ok := k.(Batcher)
		if !ok {
			t.Skip("not a Batcher")
		}
		// want checks one batch's answers: the errno of each failed op, nil elsewhere.
		want := func(t *testing.T, what string, ops []Op, errs []error, failed map[int]syscall.Errno) {
			t.Helper()
			if len(failed) == 0 && errs != nil {
				t.Errorf("%s: errors %v, want none (a nil slice)", what, errs)
				return
			}
			if errs != nil && len(errs) != len(ops) {
				t.Fatalf("%s: %d errors for %d operations", what, len(errs), len(ops))
			}
			for i := range ops {
				var err error
				if errs != nil {
					err = errs[i]
				}
				errno, bad := failed[i]
				switch {
				case !bad && err != nil:
					t.Errorf("%s: op %d (%s) failed: %v", what, i, ops[i], err)
				case bad && !errors.Is(err, errno):
					t.Errorf("%s: op %d (%s) = %v, want %v", what, i, ops[i], err, errno)
				case bad:
					var ke *KernelError
					if !errors.As(err, &ke) || ke.Op != opName(ops[i].Action) || ke.Object == "" {
						t.Errorf("%s: op %d error %#v does not name its operation and object", what, i, err)
					}
				}
			}
		}
		vs := []*VirtualServer{vsOf("10.96.4.1:80/tcp"), vsOf("10.96.4.2:80/tcp"), vsOf("10.96.4.3:53/udp")}
		must(t, "add one first", k.AddVirtualServer(ctx, vs[1]))
		var ops []Op
		for _, v := range vs {
			ops = append(ops, Op{Action: AddVirtualServer, Server: v, Key: v.VSKey})
			t.Cleanup(func() { _ = k.DeleteVirtualServer(ctx, v.VSKey) })
		}
		want(t, "add virtual servers", ops, b.Batch(ctx, ops), map[int]syscall.Errno{1: syscall.EEXIST})
		got, err := k.VirtualServers(ctx, proxier.IPv4)
		must(t, "list", err)
		if len(got) != 3 {
			t.Errorf("after a batch failing in the middle: %v; the kernel goes on past a failure", got)
		}

		missing := VSKey{Addr: netip.MustParseAddr("10.96.4.9"), Protocol: proxier.ProtocolTCP, Port: 80}
		reals := []Op{
			{Action: AddRealServer, Key: vs[0].VSKey, Real: RealServer{Addr: netip.MustParseAddrPort("10.244.4.1:80"), Weight: 1}},
			{Action: AddRealServer, Key: missing, Real: RealServer{Addr: netip.MustParseAddrPort("10.244.4.1:80"), Weight: 1}},
			{Action: AddRealServer, Key: vs[0].VSKey, Real: RealServer{Addr: netip.MustParseAddrPort("[fd00::1]:80"), Weight: 1}},
			{Action: AddRealServer, Key: vs[0].VSKey, Real: RealServer{Addr: netip.MustParseAddrPort("10.244.4.2:80"), Weight: 1}},
			{Action: AddRealServer, Key: vs[2].VSKey, Real: RealServer{Addr: netip.MustParseAddrPort("10.244.4.3:53"), Weight: 1}},
		}
		want(t, "add real servers", reals, b.Batch(ctx, reals), map[int]syscall.Errno{1: syscall.ESRCH, 2: syscall.EINVAL})
		drain := []Op{
			{Action: DrainRealServer, Key: vs[0].VSKey, Real: RealServer{Addr: netip.MustParseAddrPort("10.244.4.1:80")}},
			{Action: UpdateRealServer, Key: vs[0].VSKey, Real: RealServer{Addr: netip.MustParseAddrPort("10.244.4.9:80"), Weight: 1}},
		}
		want(t, "drain", drain, b.Batch(ctx, drain), map[int]syscall.Errno{1: syscall.ENOENT})
		rs, err := k.RealServers(ctx, vs[0].VSKey)
		must(t, "list real servers", err)
		if len(rs) != 2 || rs[0].Weight != 0 || rs[1].Weight != 1 {
			t.Errorf("real servers after the batches: %v, want 10.244.4.1:80 at weight 0 and 10.244.4.2:80", rs)
		}
		del := []Op{
			{Action: DeleteRealServer, Key: vs[0].VSKey, Real: RealServer{Addr: netip.MustParseAddrPort("10.244.4.9:80")}},
			{Action: DeleteRealServer, Key: vs[0].VSKey, Real: RealServer{Addr: netip.MustParseAddrPort("10.244.4.1:80")}},
			{Action: DeleteVirtualServer, Key: vs[2].VSKey},
		}
		want(t, "delete real servers", del[:2], b.Batch(ctx, del[:2]), map[int]syscall.Errno{0: syscall.ENOENT})
		updates := []Op{{Action: UpdateVirtualServer, Server: vsOf("10.96.4.9:80/tcp")}, {Action: UpdateVirtualServer, Server: vs[0]}}
		want(t, "update virtual servers", updates, b.Batch(ctx, updates), map[int]syscall.Errno{0: syscall.ESRCH})
		want(t, "delete virtual servers", del[2:], b.Batch(ctx, del[2:]), nil)
		want(t, "delete virtual servers again", del[2:], b.Batch(ctx, del[2:]), map[int]syscall.Errno{0: syscall.ESRCH})

		// A list longer than one answer buffer: the dump comes in several.
		var many []Op
		for i := range 2000 {
			many = append(many, Op{Action: AddRealServer, Key: vs[0].VSKey,
				Real: RealServer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 245, byte(i >> 8), byte(i)}), 8080), Weight: 1 + i%3}})
		}
		want(t, "add 2,000 real servers", many, b.Batch(ctx, many), nil)
		rs, err = k.RealServers(ctx, vs[0].VSKey)
		must(t, "list 2,000 real servers", err)
		if len(rs) != 2001 || rs[2000].Addr != netip.MustParseAddrPort("10.245.7.207:8080") || rs[2000].Weight != 1+1999%3 {
			t.Errorf("listed %d real servers, last %v; want 2,001, the last 10.245.7.207:8080 at weight %d", len(rs), rs[len(rs)-1], 1+1999%3)
		}

		_, err = k.EnsureDevice(ctx)
		must(t, "ensure device", err)
		t.Cleanup(func() { _ = k.DeleteDevice(ctx) })
		must(t, "bind one first", k.AddAddress(ctx, netip.MustParseAddr("10.96.4.2")))
		var binds, unbinds []Op
		for _, a := range []string{"10.96.4.1", "10.96.4.2", "fd00:96::41"} {
			binds = append(binds, Op{Action: BindAddress, Addr: netip.MustParseAddr(a)})
		}
		want(t, "bind", binds, b.Batch(ctx, binds), map[int]syscall.Errno{1: syscall.EEXIST})
		addrs, _, err := k.DeviceAddresses(ctx, proxier.IPv4)
		must(t, "list addresses", err)
		if len(addrs) != 2 {
			t.Errorf("bound IPv4 addresses %v, want 10.96.4.1 and 10.96.4.2", addrs)
		}
		unbinds = append(unbinds, binds[0], Op{Action: UnbindAddress, Addr: netip.MustParseAddr("10.96.4.7")}, binds[2])
		for i := range unbinds {
			unbinds[i].Action = UnbindAddress
		}
		want(t, "unbind", unbinds, b.Batch(ctx, unbinds), map[int]syscall.Errno{1: syscall.EADDRNOTAVAIL})

		// More members than fit one sendmsg: the batch goes in several, and a
		// failure in the last one is still reported at its own index.
		spec := SetSpec{Name: "KPROXY-TEST-BATCH", Type: HashIPPort, Family: proxier.IPv4}
		must(t, "create set", k.CreateSet(ctx, spec))
		t.Cleanup(func() { _ = k.DestroySet(ctx, spec.Name) })
		var entries []Op
		for i := range 5000 {
			entries = append(entries, Op{Action: AddEntry, Set: &spec,
				Entry: SetEntry{IP: netip.AddrFrom4([4]byte{10, 97, byte(i >> 8), byte(i)}), Protocol: proxier.ProtocolTCP, Port: 80}})
		}
		entries[4990] = entries[7]
		want(t, "add members", entries, b.Batch(ctx, entries), map[int]syscall.Errno{4990: syscall.EEXIST})
		c, err := k.ListSet(ctx, spec.Name)
		must(t, "list set", err)
		if len(c.Entries) != 4999 {
			t.Errorf("set has %d members, want 4999", len(c.Entries))
		}
		for i := range entries {
			entries[i].Action = DeleteEntry
		}
		want(t, "delete members", entries, b.Batch(ctx, entries), map[int]syscall.Errno{4990: syscall.ENOENT})
	})

	t.Run("sysctls and timeouts", func(t *testing.T) {
		const name = "net/ipv4/vs/expire_nodest_conn"
		must(t, "set", k.SetSysctl(ctx, name, "1"))
		if v, err := k.Sysctl(ctx, name); err != nil || v != "1" {
			t.Errorf("%s = %q, %v; want 1", name, v, err)
		}
		if err := k.SetSysctl(ctx, "kernel/hostname", "x"); err == nil {
			t.Errorf("SetSysctl accepted a non-network sysctl")
		}
		if major, _, err := k.KernelVersion(ctx); err != nil || major < 3 {
			t.Errorf("KernelVersion: %d, %v", major, err)
		}
	})
}

func TestFakeConformance(t *testing.T) {
	f := &Fake{}
	f.SetHostAddresses(testNodeIP)
	kernelConformance(t, f)
}

// TestFakeConcurrent hammers one Fake from several goroutines; run with -race.
func TestFakeConcurrent(t *testing.T) {
	ctx := context.Background()
	f := &Fake{}
	if _, err := f.EnsureDevice(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 200 {
				vs := &VirtualServer{VSKey: VSKey{Addr: netip.AddrFrom4([4]byte{10, 96, byte(g), byte(i)}), Protocol: proxier.ProtocolTCP, Port: 80}, Scheduler: "rr"}
				_ = f.AddVirtualServer(ctx, vs)
				_ = f.AddRealServer(ctx, vs.VSKey, RealServer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 244, byte(g), byte(i)}), 80), Weight: 1})
				_ = f.AddAddress(ctx, vs.Addr)
				_, _ = f.VirtualServers(ctx, proxier.IPv4)
				_ = f.Snapshot(proxier.IPv4)
				_ = f.DeleteVirtualServer(ctx, vs.VSKey)
			}
		}()
	}
	for range 4 {
		<-done
	}
	if st := f.Stats(); st.Calls[OpAddService] != 800 || len(f.Snapshot(proxier.IPv4).Servers) != 0 {
		t.Errorf("after concurrent use: %v calls, %d virtual servers left", st.Calls[OpAddService], len(f.Snapshot(proxier.IPv4).Servers))
	}
}

func TestFakeFaultInjection(t *testing.T) {
	ctx := context.Background()
	f := &Fake{}
	boom := errors.New("boom")
	f.FailNext(OpAddService, boom)
	vs := vsOf("10.96.0.1:80/tcp")
	if err := f.AddVirtualServer(ctx, vs); !errors.Is(err, boom) {
		t.Fatalf("first add: %v, want injected error", err)
	}
	if len(f.Snapshot(proxier.IPv4).Servers) != 0 {
		t.Fatalf("failed operation changed state")
	}
	if err := f.AddVirtualServer(ctx, vs); err != nil {
		t.Fatalf("second add: %v", err)
	}
	f.Hook = func(op, object string) error {
		if op == OpDeleteService && object == vs.VSKey.String() {
			return boom
		}
		return nil
	}
	if err := f.DeleteVirtualServer(ctx, vs.VSKey); !errors.Is(err, boom) {
		t.Fatalf("hooked delete: %v", err)
	}
	if st := f.Stats(); st.Calls[OpAddService] != 2 || st.Calls[OpDeleteService] != 1 || st.Writes != 3 {
		t.Errorf("stats %+v: failed calls must be counted", st)
	}
}
