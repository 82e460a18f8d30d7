package vm

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// buildTests compiles the tests of every package matching pattern into static binaries in
// outDir and returns their paths. Relative patterns are resolved against root.
func buildTests(goTool, root, pattern string, tags []string, outDir string) ([]string, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, err
	}
	allTags := append([]string{"vmtest"}, tags...)
	// A trailing slash makes -o a directory, so that a pattern matching several packages
	// yields one binary per package.
	args := []string{"test", "-c", "-tags", strings.Join(allTags, ","), "-o", outDir + string(filepath.Separator), pattern}
	cmd := exec.Command(goTool, args...)
	cmd.Dir = root
	// The VM has no C library for Go binaries to link against; the loader and libc it carries
	// belong to the copied iptables tools.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	entries, err := os.ReadDir(outDir)
	if err != nil {
		return nil, err
	}
	var bins []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".test") {
			bins = append(bins, filepath.Join(outDir, e.Name()))
		}
	}
	sort.Strings(bins)
	if len(bins) == 0 {
		return nil, fmt.Errorf("no test binary built: no package matching %q has test files", pattern)
	}
	return bins, nil
}
