// Command demo is `make demo`: it builds a sandbox of network namespaces (a node with two
// pods on its bridge, a remote node with one pod, an external client), runs kproxy's
// iptables proxier on the node from examples/offline/cluster.yaml, and shows real
// traffic: requests to the ClusterIP spread across the pods, a NodePort request from
// outside, and a scale-down picked up live. Everything is torn down at the end, also on
// Ctrl-C. It needs root and iptables, and touches nothing outside its namespaces.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/kproxy/kproxy/test/envtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Println("\nInterrupted; the sandbox has been removed.")
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// The sandbox's well-known addresses, which cluster.yaml refers to.
var (
	clusterIP = netip.MustParseAddrPort("10.96.0.10:80")
	nodePort  = netip.MustParseAddrPort("198.18.0.10:30080")
)

func run(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return errors.New("the demo creates network namespaces and iptables rules: run it as root (make demo)")
	}
	root, err := envtest.RepoRoot()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "kproxy-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	step("Building the sandbox: a node with pods local-0 and local-1, a remote node with remote-0, and an external client")
	sb, err := newSandbox()
	if err != nil {
		return err
	}
	defer func() {
		step("Tearing the sandbox down")
		sb.Close()
	}()
	sb.describe()

	cluster := filepath.Join(work, "cluster.yaml")
	if err := copyFile(filepath.Join(root, "examples/offline/cluster.yaml"), cluster); err != nil {
		return err
	}
	if err := sb.checkAddresses(cluster); err != nil {
		return err
	}
	step("Starting kproxy (examples/offline, iptables mode) inside the node, on examples/offline/cluster.yaml")
	proxy, err := sb.startProxy(ctx, root, work, cluster)
	if err != nil {
		return err
	}
	defer proxy.stop()
	if err := sb.waitForService(ctx, clusterIP); err != nil {
		return fmt.Errorf("%w\n%s", err, proxy.logs())
	}

	step(fmt.Sprintf("Ten requests from pod local-0 to the ClusterIP %s", clusterIP))
	// Ten random picks among three pods all land on one with probability 5e-5.
	seen, err := sb.requests(ctx, sb.topo.Node.Pods[0].NS, clusterIP, 10)
	if err != nil {
		return err
	}
	if len(seen) < 2 {
		return fmt.Errorf("all requests reached one pod (%v); expected them to spread", seen)
	}

	step(fmt.Sprintf("A request from the external client to the NodePort %s", nodePort))
	if _, err := sb.requests(ctx, sb.topo.Clients[0].NS, nodePort, 1); err != nil {
		return err
	}

	step("Scaling down: removing pod local-1 (10.244.1.3) from the EndpointSlice in cluster.yaml")
	if err := removeEndpoint(cluster, "10.244.1.3"); err != nil {
		return err
	}
	if err := sb.waitUntilGone(ctx, clusterIP, "local-1"); err != nil {
		return fmt.Errorf("%w\n%s", err, proxy.logs())
	}
	step("Six more requests to the ClusterIP: local-1 no longer answers")
	if _, err := sb.requests(ctx, sb.topo.Node.Pods[0].NS, clusterIP, 6); err != nil {
		return err
	}

	step("What kproxy logged")
	fmt.Print(proxy.logs())
	step("Done: kproxy programmed real iptables rules from a YAML file and followed a change live.")
	return nil
}

func step(msg string) { fmt.Printf("\n==> %s\n", msg) }
