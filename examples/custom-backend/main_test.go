package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/kproxy/kproxy/controller/offline"
	"github.com/kproxy/kproxy/proxier"
)

func TestExporterPrintsSelectedEndpoints(t *testing.T) {
	b := proxier.NewBuilder(proxier.BuilderOptions{NodeName: "node-a"})
	if err := offline.New(offline.Options{Path: "../../controller/offline/testdata/cluster.yaml", Builder: b, Logger: logr.Discard()}).Load(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	exp := &Exporter{Out: &out}
	st, cs := b.Snapshot()
	if err := exp.Sync(context.Background(), st, cs); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Full     bool          `json:"full"`
		Services []ServiceView `json:"services"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	if !doc.Full || len(doc.Services) != 2 {
		t.Fatalf("doc = %+v", doc)
	}
	web := doc.Services[1]
	if web.Name != "default/web:http/tcp" || web.NodePort != 30080 || len(web.Cluster) != 2 || web.Reject {
		t.Errorf("web = %+v", web)
	}
}

func TestBinaryExportsOnceFromAFile(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "custom-backend")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-f", "../../controller/offline/testdata/cluster.yaml", "--node", "node-a", "--once").Output()
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(string(out), `"name": "default/dns:dns/udp"`) || !strings.Contains(string(out), `"10.244.1.7:5353"`) {
		t.Errorf("output lacks the dns service and its endpoint:\n%s", out)
	}
}
