package netns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// sysctl is one setting; optional ones are skipped when the kernel lacks them.
type sysctl struct {
	key, value string
	optional   bool
}

// Sysctl sets a network sysctl inside the namespace. key is either dotted
// ("net.ipv4.ip_forward") or a path below /proc/sys ("net/ipv4/conf/eth0.100/rp_filter",
// for names that contain dots). Only net.* keys are accepted: the kernel resolves those
// per network namespace, whereas writing any other key would change the host.
func (n *NS) Sysctl(key, value string) error {
	return n.setSysctls([]sysctl{{key: key, value: value}})
}

// ReadSysctl returns the value of a network sysctl inside the namespace, trimmed of the
// trailing newline. key has the same forms as for [NS.Sysctl].
func (n *NS) ReadSysctl(key string) (string, error) {
	path, err := sysctlPath(key)
	if err != nil {
		return "", err
	}
	var b []byte
	err = n.Do(func() error {
		var err error
		b, err = os.ReadFile(path)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("netns: read sysctl %s in %s: %w", key, n, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// setSysctls writes several settings from one thread switch.
func (n *NS) setSysctls(list []sysctl) error {
	return n.Do(func() error {
		for _, s := range list {
			path, err := sysctlPath(s.key)
			if err != nil {
				return err
			}
			// /proc/sys resolves net.* against the opening thread's namespace.
			err = os.WriteFile(path, []byte(s.value+"\n"), 0o644)
			if s.optional && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("netns: set sysctl %s=%q in %s: %w", s.key, s.value, n, err)
			}
		}
		return nil
	})
}

// sysctlPath maps a key to its /proc/sys file and refuses keys outside net.*.
func sysctlPath(key string) (string, error) {
	rel := key
	if !strings.Contains(key, "/") {
		rel = strings.ReplaceAll(key, ".", "/")
	}
	rel = strings.TrimPrefix(rel, "/proc/sys/")
	if !strings.HasPrefix(rel, "net/") || strings.Contains(rel, "..") {
		return "", fmt.Errorf("netns: sysctl %q is not a per-namespace net.* key", key)
	}
	return "/proc/sys/" + rel, nil
}
