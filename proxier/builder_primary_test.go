package proxier

import (
	"net/netip"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPrimaryNodeIPComesFirst(t *testing.T) {
	primary := netip.MustParseAddr("192.0.2.20")
	b := NewBuilder(BuilderOptions{NodeName: "n", PrimaryNodeIP: primary})
	st, _ := b.Snapshot()
	if got := st.Node.Addresses; len(got) != 1 || got[0] != primary {
		t.Fatalf("before the Node is seen, addresses = %v, want [%v]", got, primary)
	}
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}, Status: v1.NodeStatus{Addresses: []v1.NodeAddress{
		{Type: v1.NodeInternalIP, Address: "192.0.2.10"},
		{Type: v1.NodeInternalIP, Address: "192.0.2.20"},
		{Type: v1.NodeInternalIP, Address: "2001:db8::1"},
	}}}
	if err := b.SetNode(node); err != nil {
		t.Fatal(err)
	}
	st, _ = b.Snapshot()
	want := []netip.Addr{primary, netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::1")}
	if got := st.Node.Addresses; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("addresses = %v, want %v", got, want)
	}
}
