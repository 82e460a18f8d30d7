package offline

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kproxy/kproxy/proxier"
)

func port(ns, name, p string, proto proxier.Protocol) proxier.ServicePortName {
	return proxier.ServicePortName{ServiceName: proxier.ServiceName{Namespace: ns, Name: name}, Port: p, Protocol: proto}
}

func TestLoadReadsDocumentsAndLists(t *testing.T) {
	b := proxier.NewBuilder(proxier.BuilderOptions{NodeName: "node-a"})
	var errs []error
	s := New(Options{Path: "testdata/cluster.yaml", Builder: b, OnError: func(e error) { errs = append(errs, e) }})
	if err := s.Load(); err != nil {
		t.Fatal(err)
	}
	if len(errs) > 0 {
		t.Fatalf("unexpected errors: %v", errs)
	}
	st, _ := b.Snapshot()
	web, ok := st.Lookup(port("default", "web", "http", proxier.ProtocolTCP))
	if !ok || web.NodePort != 30080 || len(web.Endpoints) != 2 || !web.Endpoints[0].Local {
		t.Errorf("web = %+v", web)
	}
	dns, ok := st.Lookup(port("default", "dns", "dns", proxier.ProtocolUDP))
	if !ok || len(dns.Endpoints) != 1 || dns.Endpoints[0].Port != 5353 {
		t.Errorf("dns (from a List) = %+v", dns)
	}
	if st.Node.Zone != "zone-1" || len(st.Node.Addresses) != 1 {
		t.Errorf("node = %+v", st.Node)
	}
}

func TestBadDocumentsAreNamedAndSkipped(t *testing.T) {
	const file = `apiVersion: v1
kind: Service
metadata: {namespace: default, name: typo}
spec:
  clusterIP: 10.96.0.1
  portz: []
---
apiVersion: v1
kind: ConfigMap
metadata: {namespace: default, name: cm}
---
apiVersion: v1
kind: Service
metadata: {namespace: default, name: badport}
spec:
  clusterIP: 10.96.0.2
  ports: [{port: 0}]
---
apiVersion: v1
kind: Service
metadata: {namespace: default, name: good}
spec:
  clusterIP: 10.96.0.3
  ports: [{port: 80}]
`
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	b := proxier.NewBuilder(proxier.BuilderOptions{NodeName: "n"})
	var errs []error
	if err := New(Options{Path: path, Builder: b, OnError: func(e error) { errs = append(errs, e) }}).Load(); err != nil {
		t.Fatal(err)
	}
	if len(errs) != 3 {
		t.Fatalf("got %d errors, want 3: %v", len(errs), errs)
	}
	for i, want := range []string{"document 0 (Service default/typo)", "document 1 (ConfigMap default/cm)", "spec.ports[0].port"} {
		if !strings.Contains(errs[i].Error(), want) || !strings.Contains(errs[i].Error(), path) {
			t.Errorf("error %d = %q, want it to name the file and %q", i, errs[i], want)
		}
	}
	if !strings.Contains(errs[0].Error(), "portz") {
		t.Errorf("strict decoding must name the unknown field: %v", errs[0])
	}
	var de *DocumentError
	if !errors.As(errs[1], &de) || !errors.Is(de, ErrUnsupportedKind) {
		t.Errorf("ConfigMap error = %v, want ErrUnsupportedKind", errs[1])
	}
	st, _ := b.Snapshot()
	if _, ok := st.Lookup(port("default", "good", "", proxier.ProtocolTCP)); !ok || st.Len() != 1 {
		t.Errorf("only the good service must be in the model, have %d ports", st.Len())
	}
}

func TestUnreadableFileIsAnError(t *testing.T) {
	b := proxier.NewBuilder(proxier.BuilderOptions{NodeName: "n"})
	if err := New(Options{Path: "testdata/missing.yaml", Builder: b}).Load(); err == nil {
		t.Fatal("want an error for a missing file")
	}
}

func TestStartReloadsChangesAndDeletesRemovedObjects(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	data, err := os.ReadFile("testdata/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	b := proxier.NewBuilder(proxier.BuilderOptions{NodeName: "node-a"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- New(Options{Path: path, Builder: b, Interval: 10 * time.Millisecond}).Start(ctx) }()
	select {
	case <-b.Initialized():
	case <-time.After(5 * time.Second):
		t.Fatal("source never initialized the model")
	}
	if st, _ := b.Snapshot(); st.Len() != 2 {
		t.Fatalf("want 2 service ports, have %d", st.Len())
	}
	// Rename the web service: the old name must be deleted from the model.
	trimmed := strings.Replace(string(data), "metadata: {namespace: default, name: web}", "metadata: {namespace: default, name: web2}", 1)
	if err := os.WriteFile(path, []byte(trimmed), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, _ := b.Snapshot()
		_, oldWeb := st.Lookup(port("default", "web", "http", proxier.ProtocolTCP))
		_, newWeb := st.Lookup(port("default", "web2", "http", proxier.ProtocolTCP))
		if !oldWeb && newWeb {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reload not applied: web present=%v web2 present=%v", oldWeb, newWeb)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
