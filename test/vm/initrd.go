package vm

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
)

// initrdSpec lists what goes into one run's initramfs on top of the cached base.
type initrdSpec struct {
	Base       string            // the base archive (compressed cpio)
	Init       []byte            // the /init script
	Binaries   map[string]string // guest path -> host path of test binaries
	ExtraFiles map[string]string // host path -> guest path (files or directories)
}

// writeInitrd writes the run's initramfs to dst: the cached base archive followed by a second,
// uncompressed archive with /init, the test binaries and the extra files. The kernel unpacks
// concatenated archives in order; leaving the per-run part uncompressed saves an emulated
// decompression of the (large) test binaries on every boot.
func writeInitrd(dst string, spec initrdSpec) (err error) {
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	base, err := os.Open(spec.Base)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, base)
	base.Close()
	if err != nil {
		return fmt.Errorf("copy base initramfs: %w", err)
	}
	// The kernel looks for the next archive's magic only at a four-byte boundary and skips
	// zero padding until it gets there.
	if r := n % 4; r != 0 {
		if _, err := out.Write(make([]byte, 4-r)); err != nil {
			return err
		}
	}
	c := newCPIOWriter(out)
	if err := c.addBytes("/init", 0o755, spec.Init); err != nil {
		return fmt.Errorf("add /init: %w", err)
	}
	for _, guest := range sortedKeys(spec.Binaries) {
		if err := c.addFile(guest, spec.Binaries[guest]); err != nil {
			return fmt.Errorf("add test binary: %w", err)
		}
	}
	for _, host := range sortedKeys(spec.ExtraFiles) {
		if err := addTree(c, host, spec.ExtraFiles[host]); err != nil {
			return fmt.Errorf("add extra file %s: %w", host, err)
		}
	}
	return c.Close()
}

// addTree adds the host file or directory tree at host under the guest path.
func addTree(c *cpioWriter, host, guest string) error {
	st, err := os.Stat(host)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return c.addFile(guest, host)
	}
	return filepath.WalkDir(host, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(host, p)
		if err != nil {
			return err
		}
		target := path.Join(guest, filepath.ToSlash(rel))
		if d.IsDir() {
			return c.mkdirAll(target)
		}
		return c.addFile(target, p)
	})
}
