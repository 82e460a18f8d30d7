package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kproxy/kproxy/test/netns"
)

// clusterTemplate is a node, a ClusterIP Service and its slice with one local pod.
const clusterTemplate = `apiVersion: v1
kind: Node
metadata: {name: test-node}
status:
  addresses: [{type: InternalIP, address: %s}]
---
apiVersion: v1
kind: Service
metadata: {namespace: default, name: echo}
spec:
  clusterIP: 10.96.0.20
  ports: [{name: tcp, port: 80, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  namespace: default
  name: echo-1
  labels: {kubernetes.io/service-name: echo}
addressType: IPv4
ports: [{name: tcp, port: 9090, protocol: TCP}]
endpoints:
- addresses: [%s]
  nodeName: test-node
`

// TestOfflineProgramsANamespaceNode runs the example binary inside a namespace standing
// in for a node, as the demo does, and checks a real connection through the Service and
// that --cleanup-on-exit removes the rules on SIGTERM.
func TestOfflineProgramsANamespaceNode(t *testing.T) {
	topo := netns.New(t, netns.Spec{LocalPods: 1, Clients: 1})
	pod := topo.Node.Pods[0]
	if _, err := pod.ServeTCP(9090); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cluster := filepath.Join(dir, "cluster.yaml")
	yaml := fmt.Sprintf(clusterTemplate, topo.Node.Addrs.V4, pod.Addrs.V4)
	if err := os.WriteFile(cluster, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "offline")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	var logs bytes.Buffer
	cmd := topo.Node.Command(context.Background(), bin, "-f", cluster, "--node", "test-node", "--cleanup-on-exit")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
	})

	svc := netip.MustParseAddrPort("10.96.0.20:80")
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := topo.Clients[0].DialTCP(ctx, svc, time.Second)
		if err == nil {
			t.Logf("client -> %s answered by %s (%s)", svc, r.Server, r.ServerIP)
			if r.ServerIP != pod.Addrs.V4 {
				t.Errorf("answered by %s, want the pod %s", r.ServerIP, pod.Addrs.V4)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the service never answered: %v\n%s", err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no exit after SIGTERM\n%s", logs.String())
	}
	out, err := topo.Node.Exec(ctx, "iptables-save", "-t", "nat")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "KUBE-SVC-") {
		t.Errorf("--cleanup-on-exit left service chains behind:\n%s", out)
	}
}
