// Command testreport reads `go test -json` output on stdin and prints what CI needs to
// see: one line per package (like go test), the full output of every failed test, every
// skipped test with its reason, and a closing "N passed, N failed, N skipped" line.
//
// It exits non-zero when a test failed, a package failed to build, or a test skipped for
// an environmental reason (not root, a tool missing): in CI every tier must really run,
// so such a skip is a broken CI machine, not a pass. Opt-in measurements that skip unless
// asked for (an environment variable, -short) are listed but allowed.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
)

// event is one line of `go test -json` (test2json) output.
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output and build-fail events
	Test       string
	Output     string
	Elapsed    float64
}

// environmental matches skip messages that mean the machine lacks something CI must have.
var environmental = regexp.MustCompile(`(?i)needs root|run (the test|it) as root|not installed|not available|no iptables backend|qemu.*(missing|not found)|needs the ip command`)

type key struct{ pkg, test string }

func main() {
	code, err := report(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(2)
	}
	os.Exit(code)
}

func report(in io.Reader, out io.Writer) (int, error) {
	outputs := map[key][]string{}
	var passed, failed, skipped, buildFailed int
	var failures, skips []key
	var pkgLines []string
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			// Not JSON: a build error printed by go test itself.
			fmt.Fprintln(out, sc.Text())
			continue
		}
		k := key{e.Package, e.Test}
		switch e.Action {
		case "build-output":
			fmt.Fprint(out, e.Output)
		case "build-fail":
			buildFailed++
			pkgLines = append(pkgLines, fmt.Sprintf("FAIL\t%s [build failed]", e.ImportPath))
		case "output":
			outputs[k] = append(outputs[k], e.Output)
		case "pass":
			if e.Test != "" {
				passed++
				delete(outputs, k)
			} else {
				pkgLines = append(pkgLines, fmt.Sprintf("ok  \t%s\t%.3fs", e.Package, e.Elapsed))
			}
		case "fail":
			if e.Test != "" {
				failed++
				failures = append(failures, k)
			} else {
				pkgLines = append(pkgLines, fmt.Sprintf("FAIL\t%s\t%.3fs", e.Package, e.Elapsed))
				if !hasFailedTest(failures, e.Package) {
					failures = append(failures, k) // build failure or TestMain failure
				}
			}
		case "skip":
			if e.Test != "" {
				skipped++
				skips = append(skips, k)
			} else {
				pkgLines = append(pkgLines, fmt.Sprintf("?   \t%s\t[no test files]", e.Package))
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 2, err
	}
	for _, l := range pkgLines {
		fmt.Fprintln(out, l)
	}
	for _, k := range failures {
		fmt.Fprintf(out, "\n=== FAILED %s %s\n%s", k.pkg, k.test, strings.Join(outputs[k], ""))
	}
	badSkips := 0
	if len(skips) > 0 {
		sort.Slice(skips, func(i, j int) bool { return skips[i].pkg+skips[i].test < skips[j].pkg+skips[j].test })
		fmt.Fprintln(out, "\nSkipped tests:")
		for _, k := range skips {
			reason := skipReason(outputs[k])
			mark := "  "
			if environmental.MatchString(reason) {
				mark = "!!"
				badSkips++
			}
			fmt.Fprintf(out, "%s %s %s: %s\n", mark, k.pkg, k.test, reason)
		}
	}
	if badSkips > 0 {
		fmt.Fprintf(out, "\n%d tests skipped because this machine lacks something every tier needs (marked !!)\n", badSkips)
	}
	if len(failures) > 0 {
		// Repeated last, because a long log above can push a failure's own message out
		// of the part of the output a reader (or CI's tail) sees.
		fmt.Fprintln(out, "\nFailure messages:")
		for _, k := range failures {
			for _, l := range failureMessages(outputs[k]) {
				fmt.Fprintf(out, "   %s %s: %s\n", k.pkg, k.test, l)
			}
		}
	}
	fmt.Fprintf(out, "\n%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 || len(failures) > 0 || buildFailed > 0 || badSkips > 0 {
		return 1, nil
	}
	return 0, nil
}

func hasFailedTest(failures []key, pkg string) bool {
	for _, k := range failures {
		if k.pkg == pkg {
			return true
		}
	}
	return false
}

// testMessage matches what t.Error, t.Fatal and friends print: "file_test.go:12: msg".
var testMessage = regexp.MustCompile(`^\s*[\w.-]+\.go:\d+: `)

// failureMessages picks a failed test's own messages (and any panic line) out of its
// output, at most 20 of them.
func failureMessages(lines []string) []string {
	var out []string
	for _, l := range lines {
		if testMessage.MatchString(l) || strings.HasPrefix(l, "panic:") {
			out = append(out, strings.TrimSpace(l))
			if len(out) == 20 {
				break
			}
		}
	}
	if len(out) == 0 {
		out = append(out, "(no message; see the output above)")
	}
	return out
}

// skipReason is the message the test gave to t.Skip: the last output line that is not
// go test's own "--- SKIP" header.
func skipReason(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "--- SKIP") || strings.HasPrefix(l, "=== ") {
			continue
		}
		return l
	}
	return "(no reason given)"
}
