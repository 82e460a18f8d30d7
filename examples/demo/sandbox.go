package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/kproxy/kproxy/test/netns"
)

const podPort = 8080

// sandbox is the demo's cluster of namespaces with an HTTP server in every pod.
type sandbox struct {
	topo *netns.Topology
}

func newSandbox() (*sandbox, error) {
	topo, err := netns.Build(netns.Spec{LocalPods: 2, RemotePods: 1, Clients: 1})
	if err != nil {
		return nil, fmt.Errorf("building the sandbox: %w", err)
	}
	sb := &sandbox{topo: topo}
	for _, pod := range topo.Pods() {
		if _, err := pod.ServeHTTP(podPort); err != nil {
			topo.Close()
			return nil, fmt.Errorf("starting the web server in %s: %w", pod.Label, err)
		}
	}
	return sb, nil
}

func (sb *sandbox) Close() { _ = sb.topo.Close() }

func (sb *sandbox) describe() {
	t := sb.topo
	fmt.Printf("    node      %-14s pods on bridge cbr0 %s\n", t.Node.Addrs.V4, t.Node.PodCIDR.V4)
	for _, p := range t.Pods() {
		fmt.Printf("    %-9s %-14s (%s) serves HTTP on :%d\n", p.Label, p.Addrs.V4, p.Node.Label, podPort)
	}
	fmt.Printf("    client-0  %-14s outside the cluster\n", t.Clients[0].Addrs.V4)
}

// checkAddresses makes sure cluster.yaml and the sandbox agree, so an edit to either
// fails here with a clear message rather than as a silent timeout later.
func (sb *sandbox) checkAddresses(cluster string) error {
	data, err := os.ReadFile(cluster)
	if err != nil {
		return err
	}
	for _, want := range append([]netip.Addr{sb.topo.Node.Addrs.V4}, podIPs(sb.topo)...) {
		if !strings.Contains(string(data), want.String()) {
			return fmt.Errorf("%s does not mention %s, an address of the sandbox", cluster, want)
		}
	}
	return nil
}

func podIPs(t *netns.Topology) []netip.Addr {
	var out []netip.Addr
	for _, p := range t.Pods() {
		out = append(out, p.Addrs.V4)
	}
	return out
}

// requests sends n HTTP requests from ns to addr and prints who answered and which
// client address the pod saw; it returns the set of pods that answered.
func (sb *sandbox) requests(ctx context.Context, from *netns.NS, addr netip.AddrPort, n int) (map[string]int, error) {
	seen := map[string]int{}
	for i := range n {
		r, err := from.GetHTTP(ctx, addr, 2*time.Second)
		if err != nil {
			return nil, fmt.Errorf("request %d from %s to %s: %w", i+1, from.Label, addr, err)
		}
		seen[r.Server]++
		fmt.Printf("    %s -> %s: answered by %-8s (%s), which saw the client as %s\n", from.Label, addr, r.Server, r.ServerIP, r.ClientIP)
	}
	names := make([]string, 0, len(seen))
	for name, c := range seen {
		names = append(names, fmt.Sprintf("%s×%d", name, c))
	}
	sort.Strings(names)
	fmt.Printf("    %d pods answered: %s\n", len(seen), strings.Join(names, ", "))
	return seen, nil
}

// waitForService waits until the first request through the service succeeds.
func (sb *sandbox) waitForService(ctx context.Context, addr netip.AddrPort) error {
	pod := sb.topo.Node.Pods[0]
	return poll(ctx, 30*time.Second, func() bool {
		_, err := pod.GetHTTP(ctx, addr, 500*time.Millisecond)
		return err == nil
	}, fmt.Sprintf("the service %s never answered", addr))
}

// waitUntilGone waits until 20 requests in a row avoid the named pod.
func (sb *sandbox) waitUntilGone(ctx context.Context, addr netip.AddrPort, pod string) error {
	from := sb.topo.Node.Pods[0]
	start := time.Now()
	err := poll(ctx, 30*time.Second, func() bool {
		for range 20 {
			r, err := from.GetHTTP(ctx, addr, time.Second)
			if err != nil || r.Server == pod {
				return false
			}
		}
		return true
	}, fmt.Sprintf("%s still answers through %s", pod, addr))
	if err == nil {
		fmt.Printf("    kproxy picked the change up; %s has been out of rotation for 20 requests (%.1fs after the edit)\n",
			pod, time.Since(start).Seconds())
	}
	return err
}

func poll(ctx context.Context, limit time.Duration, ok func() bool, failure string) error {
	deadline := time.Now().Add(limit)
	for !ok() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s within %s", failure, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}
