package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestReport(t *testing.T) {
	in := `{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"pass","Package":"p","Test":"TestA","Elapsed":0.1}
{"Action":"output","Package":"p","Test":"TestB","Output":"    x_test.go:9: set KPROXY_SCALE_SERVICES to run\n"}
{"Action":"output","Package":"p","Test":"TestB","Output":"--- SKIP: TestB (0.00s)\n"}
{"Action":"skip","Package":"p","Test":"TestB"}
{"Action":"pass","Package":"p","Elapsed":1.5}
`
	var out bytes.Buffer
	if code, err := report(strings.NewReader(in), &out); err != nil || code != 0 {
		t.Fatalf("code %d err %v\n%s", code, err, out.String())
	}
	if !strings.Contains(out.String(), "1 passed, 0 failed, 1 skipped") || !strings.Contains(out.String(), "ok  \tp\t1.500s") {
		t.Errorf("output:\n%s", out.String())
	}

	root := strings.Replace(in, "set KPROXY_SCALE_SERVICES to run", "needs root: creates a network namespace", 1)
	out.Reset()
	if code, _ := report(strings.NewReader(root), &out); code != 1 || !strings.Contains(out.String(), "!! p TestB") {
		t.Errorf("an environmental skip must fail CI; code %d\n%s", code, out.String())
	}

	fail := `{"Action":"output","Package":"q","Test":"TestC","Output":"    c_test.go:3: boom\n"}
{"Action":"fail","Package":"q","Test":"TestC"}
{"Action":"fail","Package":"q","Elapsed":0.2}
`
	out.Reset()
	if code, _ := report(strings.NewReader(fail), &out); code != 1 || !strings.Contains(out.String(), "boom") || !strings.Contains(out.String(), "0 passed, 1 failed") {
		t.Errorf("failure not reported; code %d\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "Failure messages:\n   q TestC: c_test.go:3: boom\n") {
		t.Errorf("the failure message is not repeated at the end:\n%s", out.String())
	}
}
