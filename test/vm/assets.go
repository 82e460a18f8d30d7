package vm

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// assetsScript is the script, relative to the module root, that prepares the kernel and the
// base initramfs.
const assetsScript = "hack/vm-assets.sh"

// assets are the cached, run-independent inputs of every VM boot.
type assets struct {
	Dir           string // the cache folder the script printed
	Kernel        string // vmlinuz
	BaseInitramfs string // gzip-compressed cpio with busybox, modules and host tools
	KernelVersion string // the guest's `uname -r`
}

var (
	assetsOnce   sync.Once
	assetsResult assets
	assetsErr    error
)

// loadAssets runs hack/vm-assets.sh once per process and remembers its answer; the script is
// idempotent but not free (it takes a lock and checks the apt state).
func loadAssets(root string) (assets, error) {
	assetsOnce.Do(func() { assetsResult, assetsErr = runAssetsScript(root) })
	return assetsResult, assetsErr
}

func runAssetsScript(root string) (assets, error) {
	script := filepath.Join(root, assetsScript)
	if _, err := os.Stat(script); err != nil {
		return assets{}, fmt.Errorf("VM assets script: %w", err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("bash", script)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return assets{}, fmt.Errorf("%s: %w\n%s", assetsScript, err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	dir := strings.TrimSpace(lines[len(lines)-1])
	a := assets{
		Dir:           dir,
		Kernel:        filepath.Join(dir, "vmlinuz"),
		BaseInitramfs: filepath.Join(dir, "base.cpio.gz"),
	}
	for _, f := range []string{a.Kernel, a.BaseInitramfs} {
		if _, err := os.Stat(f); err != nil {
			return assets{}, fmt.Errorf("%s printed %q but: %w", assetsScript, dir, err)
		}
	}
	v, err := os.ReadFile(filepath.Join(dir, "kernel.version"))
	if err != nil {
		return assets{}, fmt.Errorf("read VM kernel version: %w", err)
	}
	a.KernelVersion = strings.TrimSpace(string(v))
	return a, nil
}

// moduleRoot returns the directory of the main module's go.mod, as seen from the current
// directory (a test's package directory).
func moduleRoot(goTool string) (string, error) {
	out, err := exec.Command(goTool, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module (go env GOMOD is %q)", gomod)
	}
	return filepath.Dir(gomod), nil
}
