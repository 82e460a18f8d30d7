package vm

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"plain":          "plain",
		"-test.run=^A$":  `'-test.run=^A$'`,
		"it's":           `'it'\''s'`,
		"":               "''",
		"a b":            "'a b'",
		"10.96.0.1:80,x": "10.96.0.1:80,x",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestInitScriptRoundTripsThroughShell(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on this host")
	}
	s := initScript{
		Nonce:    "abc",
		Modules:  []string{"ip_vs", "dummy"},
		Env:      map[string]string{"B": "it's $HOME `x`", "A": "1"},
		Binaries: []string{"/kproxy-vm/tests/a.test", "/kproxy-vm/tests/b.test"},
		Args:     []string{"-test.run=^TestX$|Y"},
		Timeout:  90 * time.Second,
	}.render()
	if out, err := exec.Command(sh, "-n", "-c", s).CombinedOutput(); err != nil {
		t.Fatalf("generated /init is not valid sh: %v\n%s\n%s", err, out, s)
	}
	// The environment must reach the binaries verbatim: evaluate just the exports.
	var exports []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "export B=") || strings.HasPrefix(l, "export A=") {
			exports = append(exports, l)
		}
	}
	out, err := exec.Command(sh, "-c", strings.Join(exports, "\n")+"\nprintf '%s|%s' \"$A\" \"$B\"").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), "1|it's $HOME `x`"; got != want {
		t.Errorf("environment after the exports = %q, want %q", got, want)
	}
	for _, want := range []string{
		"KPROXY-VM-abc START a.test",
		"'-test.run=^TestX$|Y'",
		"-test.timeout=1m30s",
		"KPROXY-VM-abc RESULT $rc",
		"export KPROXY_IN_VM=1",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("generated /init lacks %q:\n%s", want, s)
		}
	}
}

func TestConsoleParser(t *testing.T) {
	clock := time.Unix(0, 0)
	now := func() time.Time { clock = clock.Add(time.Second); return clock }
	p := consoleParser{nonce: "n1", start: time.Unix(0, 0), now: now}
	for _, l := range []string{
		"KPROXY-VM-n1 BOOTED 2.50",
		"KPROXY-VM-n1 START a.test",
		"KPROXY-VM-other RESULT 0", // another run's (or a forged) marker is plain output
		"KPROXY-VM-n1 EXIT a.test 1",
		"[    3.1] kernel noise KPROXY-VM-n1 RESULT 1",
	} {
		p.parse(l)
	}
	r := p.result
	if r.BootedAfter != time.Second || r.GuestUptime != "2.50" {
		t.Errorf("boot = %s / %s", r.BootedAfter, r.GuestUptime)
	}
	if !r.HaveResult || r.Result != 1 {
		t.Errorf("result = %v %d, want 1", r.HaveResult, r.Result)
	}
	if len(r.Binaries) != 1 || r.Binaries[0] != (binaryResult{Name: "a.test", ExitCode: 1, Duration: time.Second}) {
		t.Errorf("binaries = %+v", r.Binaries)
	}
}

func TestCleanConsoleLine(t *testing.T) {
	in := "\x1bc\x1b[?7l\x1b[2JSeaBIOS (version 1)\r"
	if got := cleanConsoleLine(in); got != "SeaBIOS (version 1)" {
		t.Errorf("cleanConsoleLine = %q", got)
	}
}
