package main

import (
	"bufio"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kproxy/kproxy/test/envtest"
)

// The agent, built and run as a binary in --dry-run mode against a real API server,
// runs both its own controller and kproxy's sync on the one Manager.
func TestAgentRunsItsControllerAndKproxy(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "embed-manager")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	env := envtest.Start(t, envtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	for _, obj := range []client.Object{
		&v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "agent-settings"}, Data: map[string]string{"a": "b"}},
		&v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
			Spec: v1.ServiceSpec{Ports: []v1.ServicePort{{Name: "http", Port: 80, Protocol: v1.ProtocolTCP}}}},
		&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}},
	} {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatalf("creating %s: %v", obj.GetName(), err)
		}
	}

	cmd := exec.CommandContext(ctx, bin, "--kubeconfig", env.Kubeconfig, "--node", "node-a", "--dry-run", "--min-sync-period", "0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()

	// Each of these must show up in the agent's log.
	want := map[string]func(string) bool{
		"its own controller counted ConfigMaps": func(l string) bool {
			return strings.Contains(l, `"msg"="Counted ConfigMaps"`) && strings.Contains(l, `"trigger"="default/agent-settings"`)
		},
		"kproxy synced": func(l string) bool {
			return strings.Contains(l, `"msg"="kproxy sync"`) && strings.Contains(l, `"full"=true`)
		},
		"kproxy's model has the Service": func(l string) bool {
			return strings.Contains(l, `"msg"="Would program"`) && strings.Contains(l, `"service"="default/web:http/tcp"`)
		},
	}
	var log []string
	for len(want) > 0 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the agent exited early: %v\n%s", cmd.Wait(), strings.Join(log, "\n"))
			}
			log = append(log, l)
			for name, match := range want {
				if match(l) {
					delete(want, name)
				}
			}
		case <-ctx.Done():
			t.Fatalf("timed out; still missing %v in the log:\n%s", keys(want), strings.Join(log, "\n"))
		}
	}

	// A new ConfigMap is seen by the agent's controller while kproxy keeps running.
	if err := env.Client.Create(ctx, &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "second"}}); err != nil {
		t.Fatal(err)
	}
	for seen := false; !seen; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the agent exited early: %v\n%s", cmd.Wait(), strings.Join(log, "\n"))
			}
			log = append(log, l)
			seen = strings.Contains(l, `"trigger"="default/second"`)
		case <-ctx.Done():
			t.Fatalf("the second ConfigMap was not reconciled:\n%s", strings.Join(log, "\n"))
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	go func() {
		for range lines { // drain until the agent exits
		}
	}()
	if err := cmd.Wait(); err != nil {
		t.Errorf("the agent did not stop cleanly on SIGTERM: %v", err)
	}
	t.Logf("agent log:\n%s", strings.Join(log, "\n"))
}

func keys(m map[string]func(string) bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
