package ipvs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kproxy/kproxy/test/vm"
)

// TestVM boots a VM with a real IPVS kernel and runs this package's vmtest-tagged
// TestVM* tests inside it (vm_test.go): the Kernel conformance suite against Netlink,
// and the proxier carrying real connections through network namespaces. It skips when
// the host cannot run the VM (not root, no QEMU) and in -short mode.
func TestVM(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	opts := vm.Options{
		Package:  "./ipvs",
		Run:      "^TestVM.",
		Timeout:  15 * time.Minute,
		MemoryMB: 2048,
		Args:     []string{"-test.v"},
	}
	if dir := xfrmModules(t); dir != "" {
		opts.ExtraFiles = map[string]string{dir: vmModuleDir}
	}
	vm.Run(t, opts)
}

// vmModuleDir is where the modules test/netns needs beyond vm.DefaultModules land in
// the VM; vm_test.go loads them from there.
const vmModuleDir = "/lib/modules-extra"

// xfrmModules extracts xfrm_algo.ko and xfrm_user.ko from the VM's kernel package.
// test/netns opens netlink handles for every family, xfrm included, and the base
// initramfs only carries the netfilter, bridge, sctp, veth and dummy modules. It
// returns "" when they cannot be found, and the VM tests then report the namespace
// failure themselves.
func xfrmModules(t *testing.T) string {
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || len(bytes.TrimSpace(root)) == 0 {
		return ""
	}
	script := filepath.Join(filepath.Dir(string(bytes.TrimSpace(root))), "hack", "vm-assets.sh")
	out, err := exec.Command("bash", script).Output()
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	debs, _ := filepath.Glob(filepath.Join(lines[len(lines)-1], "deb", "*.deb"))
	if len(debs) == 0 {
		return ""
	}
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" --wildcards --no-anchored 'xfrm_algo.ko' 'xfrm_user.ko'`, "sh", debs[0], dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Logf("cannot extract xfrm modules for test/netns: %v\n%s", err, out)
		return ""
	}
	flat := t.TempDir()
	for _, name := range []string{"xfrm_algo.ko", "xfrm_user.ko"} {
		matches, _ := filepath.Glob(filepath.Join(dir, "lib", "modules", "*", "kernel", "net", "xfrm", name))
		if len(matches) == 0 {
			return ""
		}
		data, err := os.ReadFile(matches[0])
		if err != nil || os.WriteFile(filepath.Join(flat, name), data, 0o644) != nil {
			return ""
		}
	}
	return flat
}
