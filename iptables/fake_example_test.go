package iptables_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/kproxy/kproxy/iptables"
)

// The Fake parses a restore payload like iptables-restore --noflush and
// prints it back the way iptables-save would.
func ExampleFake() {
	ctx := context.Background()
	k := &iptables.Fake{}
	payload := `*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-X - [0:0]
-A KUBE-SERVICES -m comment --comment "ns/svc:http cluster IP" -m tcp -p tcp -d 172.30.0.10 --dport 80 -j KUBE-SVC-X
-A KUBE-SVC-X -j MARK --or-mark 0x4000
COMMIT
`
	if err := k.Restore(ctx, iptables.IPv4, []byte(payload), iptables.RestoreOptions{}); err != nil {
		panic(err)
	}
	out, _ := k.Save(ctx, iptables.IPv4, iptables.TableNAT)
	fmt.Print(string(out))

	// Deleting a chain that is still jumped to fails like in the kernel,
	// and leaves the table untouched.
	err := k.Restore(ctx, iptables.IPv4, []byte("*nat\n:KUBE-SVC-X - [0:0]\n-X KUBE-SVC-X\nCOMMIT\n"), iptables.RestoreOptions{})
	var ee *iptables.ExecError
	fmt.Println(errors.Is(err, iptables.ErrInvalidRuleset), errors.As(err, &ee) && ee.Line == 3)
	// Output:
	// *nat
	// :PREROUTING ACCEPT [0:0]
	// :INPUT ACCEPT [0:0]
	// :OUTPUT ACCEPT [0:0]
	// :POSTROUTING ACCEPT [0:0]
	// :KUBE-SERVICES - [0:0]
	// :KUBE-SVC-X - [0:0]
	// -A KUBE-SERVICES -d 172.30.0.10/32 -p tcp -m comment --comment "ns/svc:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-X
	// -A KUBE-SVC-X -j MARK --set-xmark 0x4000/0x4000
	// COMMIT
	// true true
}
