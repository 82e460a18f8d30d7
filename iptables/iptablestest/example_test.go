package iptablestest_test

import (
	"fmt"
	"net/netip"

	"github.com/kproxy/kproxy/iptables/iptablestest"
)

// A renderer test asserts what a Service does rather than what its rules
// look like: which endpoints a client reaches, and whether it is
// masqueraded.
func ExampleTrace() {
	dump, err := iptablestest.ParseDump(`*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-A - [0:0]
:KUBE-SEP-B - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-X - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A POSTROUTING -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MASQUERADE
-A KUBE-SEP-A -p tcp -m tcp -j DNAT --to-destination 10.180.0.1:8080
-A KUBE-SEP-B -p tcp -m tcp -j DNAT --to-destination 10.180.0.2:8080
-A KUBE-SERVICES -d 172.30.0.41/32 -p tcp -m comment --comment "ns1/svc1:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-X
-A KUBE-SVC-X ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-X -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-A
-A KUBE-SVC-X -j KUBE-SEP-B
COMMIT
`)
	if err != nil {
		panic(err)
	}
	out, err := iptablestest.Trace(dump, iptablestest.Packet{
		Source:          netip.MustParseAddr("192.168.1.5"),
		Destination:     netip.MustParseAddr("172.30.0.41"),
		Protocol:        iptablestest.TCP,
		DestinationPort: 80,
		InInterface:     "eth0",
	}, iptablestest.TraceOptions{})
	if err != nil {
		panic(err)
	}
	always, _ := out.Masqueraded()
	fmt.Println("endpoints:", out.Endpoints())
	fmt.Println("verdicts:", out.Verdicts())
	fmt.Println("always masqueraded:", always)
	fmt.Println(out[0])
	for _, s := range out[0].Steps {
		fmt.Println(" ", s)
	}
	// Output:
	// endpoints: [10.180.0.1:8080 10.180.0.2:8080]
	// verdicts: [ACCEPT]
	// always masqueraded: true
	// ACCEPT 10.180.0.1:8080 (DNAT) via FORWARD masqueraded mark=0x4000 p=0.5
	//   nat PREROUTING #1: -A PREROUTING -j KUBE-SERVICES -> jump KUBE-SERVICES
	//   nat KUBE-SERVICES #1: -A KUBE-SERVICES -d 172.30.0.41/32 -p tcp -m comment --comment "ns1/svc1:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-X -> jump KUBE-SVC-X
	//   nat KUBE-SVC-X #1: -A KUBE-SVC-X ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ -> jump KUBE-MARK-MASQ
	//   nat KUBE-MARK-MASQ #1: -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000 -> MARK 0x0 -> 0x4000
	//   nat KUBE-SVC-X #2: -A KUBE-SVC-X -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-A -> jump KUBE-SEP-A [assuming statistic random p=0.50000000000 matched]
	//   nat KUBE-SEP-A #1: -A KUBE-SEP-A -p tcp -m tcp -j DNAT --to-destination 10.180.0.1:8080 -> DNAT to 10.180.0.1:8080
	//   routing: 10.180.0.1 is not local -> FORWARD
	//   nat POSTROUTING #1: -A POSTROUTING -j KUBE-POSTROUTING -> jump KUBE-POSTROUTING
	//   nat KUBE-POSTROUTING #2: -A KUBE-POSTROUTING -j MASQUERADE -> MASQUERADE
}

// ParseIPSetSave turns `ipset save` output into the sets a trace needs for
// rules that match with -m set.
func ExampleParseIPSetSave() {
	sets, err := iptablestest.ParseIPSetSave(`create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536
add KUBE-CLUSTER-IP 172.30.0.1,tcp:443
`)
	if err != nil {
		panic(err)
	}
	fmt.Println(sets["KUBE-CLUSTER-IP"].Type, sets["KUBE-CLUSTER-IP"].Entries)
	// Output: hash:ip,port [172.30.0.1,tcp:443]
}
