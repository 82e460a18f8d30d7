package iptables

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// TestNetlinkIPSetsKernel drives the netlink implementation against the kernel inside
// a fresh namespace and cross-checks with the ipset binary.
func TestNetlinkIPSetsKernel(t *testing.T) {
	ns := newTestNetns(t)
	ctx := context.Background()
	k, err := NewNetlinkIPSets(NetlinkIPSetOptions{Netns: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	// A foreign set that must survive everything.
	inNetns(t, ns, "", "ipset", "create", "foreign", "hash:ip")
	inNetns(t, ns, "", "ipset", "add", "foreign", "192.0.2.1")

	sets := []*IPSet{
		{Name: "KUBE-T-IPPORTIP", Type: "hash:ip,port,ip", Family: IPv4,
			Entries: []string{"10.0.0.1,tcp:80,10.0.0.1", "10.0.0.2,udp:53,10.0.0.2", "10.0.0.3,sctp:99,10.0.0.3"}},
		{Name: "KUBE-T-NET", Type: "hash:net", Family: IPv4, Entries: []string{"10.0.0.1", "10.1.0.0/16"}},
		{Name: "KUBE-T-IPPORT6", Type: "hash:ip,port", Family: IPv6, Entries: []string{"fd00::1,tcp:80"}},
		{Name: "KUBE-T-NETPORT", Type: "hash:net,port", Family: IPv4, Entries: []string{"10.0.0.0/8,udp:53"}},
		{Name: "KUBE-T-IPPORTNET", Type: "hash:ip,port,net", Family: IPv4, Entries: []string{"10.0.0.1,tcp:80,10.0.0.0/8"}},
	}
	for _, s := range sets {
		if err := k.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
		if err := k.Create(ctx, s); err != nil {
			t.Fatalf("second create of %s: %v", s.Name, err)
		}
		if err := k.Add(ctx, s, s.Entries); err != nil {
			t.Fatal(err)
		}
		if err := k.Add(ctx, s, s.Entries[:1]); err != nil {
			t.Fatalf("re-adding an entry: %v", err)
		}
	}
	got, err := k.List(ctx, func(name string) bool { return strings.HasPrefix(name, "KUBE-T-") })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(sets) {
		t.Fatalf("listed %d sets, want %d", len(got), len(sets))
	}
	for _, want := range sets {
		i := slices.IndexFunc(got, func(s *IPSet) bool { return s.Name == want.Name })
		if i < 0 {
			t.Fatalf("set %s not listed", want.Name)
		}
		g := got[i]
		we := slices.Sorted(slices.Values(want.Entries))
		if g.Type != want.Type || g.Family != want.Family || !slices.Equal(g.Entries, we) {
			t.Errorf("set %s: got %s %v %q, want %s %v %q", want.Name, g.Type, g.Family, g.Entries, want.Type, want.Family, we)
		}
	}
	save := inNetns(t, ns, "", "ipset", "save")
	for _, s := range sets {
		for _, e := range s.Entries {
			if !strings.Contains(save, "add "+s.Name+" "+e+"\n") {
				t.Errorf("ipset save lacks %q:\n%s", "add "+s.Name+" "+e, save)
			}
		}
	}
	if err := k.Del(ctx, sets[0], sets[0].Entries[:2]); err != nil {
		t.Fatal(err)
	}
	if err := k.Del(ctx, sets[0], sets[0].Entries[:1]); err != nil {
		t.Fatalf("deleting a missing entry: %v", err)
	}
	for _, s := range sets {
		if err := k.Destroy(ctx, s.Name); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.Destroy(ctx, "KUBE-T-MISSING"); err != nil {
		t.Fatalf("destroying a missing set: %v", err)
	}
	if got := inNetns(t, ns, "", "ipset", "list", "-n"); got != "foreign\n" {
		t.Errorf("sets left: %q, want only the foreign one", got)
	}
}
