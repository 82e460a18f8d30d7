package netns

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// RunDir is where named namespaces are bind-mounted; the same directory `ip netns` uses,
// so `ip netns exec` and `nsenter --net=` find them.
const RunDir = "/var/run/netns"

// NSOptions describes one namespace for [Create].
type NSOptions struct {
	// Label is the role name servers report (see [NS.Label]). Required; keep it short and
	// free of spaces.
	Label string
	// Name is the kernel-visible name. Empty means "kp<random id>-<Label>". Creation fails
	// with an error wrapping fs.ErrExist if the name is taken.
	Name string
}

// Create makes a new named network namespace with loopback up, ICMP rate limiting off and
// IPv6 duplicate address detection off (see the package documentation). The caller owns
// it and must [NS.Close] it.
func Create(opts NSOptions) (*NS, error) {
	if opts.Label == "" || strings.ContainsAny(opts.Label, " \t\n/") {
		return nil, fmt.Errorf("netns: NSOptions.Label %q must be non-empty, without spaces or slashes", opts.Label)
	}
	if opts.Name == "" {
		id, err := randomID()
		if err != nil {
			return nil, err
		}
		opts.Name = "kp" + id + "-" + opts.Label
	}
	path, handle, err := createNamed(opts.Name)
	if err != nil {
		return nil, err
	}
	n := &NS{Name: opts.Name, Label: opts.Label, path: path, handle: handle}
	if err := n.setup(); err != nil {
		return nil, errors.Join(fmt.Errorf("netns: set up %s: %w", n, err), n.Close())
	}
	return n, nil
}

// baseSysctls apply to every namespace. The IPv6 ratemask is optional because older
// kernels lack it; writing an empty list clears it.
var baseSysctls = []sysctl{
	{key: "net.ipv4.icmp_ratelimit", value: "0"},
	{key: "net.ipv4.icmp_ratemask", value: "0"},
	{key: "net.ipv6.icmp.ratelimit", value: "0"},
	{key: "net.ipv6.icmp.ratemask", value: "", optional: true},
	{key: "net.ipv6.conf.all.accept_dad", value: "0"},
	{key: "net.ipv6.conf.default.accept_dad", value: "0"},
}

// setup opens the netlink handle and applies the settings every namespace gets.
func (n *NS) setup() error {
	// All families, so no request through the handle ever falls back to a socket in the
	// calling thread's namespace.
	nl, err := netlink.NewHandleAt(n.handle)
	if err != nil {
		return fmt.Errorf("open netlink handle: %w", err)
	}
	n.nl = nl
	if err := n.setSysctls(baseSysctls); err != nil {
		return err
	}
	return n.LinkUp("lo")
}

// createNamed does what `ip netns add` does: unshares a new network namespace on a locked
// thread and bind-mounts it at RunDir/name, then returns the thread to its namespace. The
// O_EXCL create of the mount point is what makes a name unique across processes.
func createNamed(name string) (string, vns.NsHandle, error) {
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return "", vns.None(), fmt.Errorf("netns: create %s: %w", RunDir, err)
	}
	path := filepath.Join(RunDir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return "", vns.None(), fmt.Errorf("netns: create mount point for %q: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return "", vns.None(), errors.Join(fmt.Errorf("netns: create mount point for %q: %w", name, err), os.Remove(path))
	}

	err = onThread(nil, func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mount at %s: %w", path, err)
		}
		return nil
	})
	if err != nil {
		return "", vns.None(), errors.Join(fmt.Errorf("netns: create %q: %w", name, err), os.Remove(path))
	}
	h, err := vns.GetFromPath(path)
	if err != nil {
		return "", vns.None(), errors.Join(fmt.Errorf("netns: open %q: %w", name, err), removeNamed(path))
	}
	return path, h, nil
}

// removeNamed undoes createNamed's bind mount and mount point. A lazy unmount is enough:
// the namespace itself lives on only while something still references it.
func removeNamed(path string) error {
	var errs []error
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("unmount: %w", err))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// randomID returns 8 hex digits: enough that topologies built at the same moment by
// parallel test packages do not collide, short enough for readable names.
func randomID() (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("netns: random id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
