package vm

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// cpioWriter writes a cpio archive in the "newc" format, the only one the kernel unpacks as
// an initramfs. It adds parent directories on demand, so callers only list files. Only what
// the per-run archive needs is supported: directories and regular files, owned by root.
type cpioWriter struct {
	w    *bufio.Writer
	ino  uint32
	dirs map[string]bool
}

// cpioInoBase starts the per-run inode numbers far above those of the base archive, so that
// no entry can be mistaken for a hard link to a base file.
const cpioInoBase = 0x40000000

const (
	cpioModeDir  = 0o040000
	cpioModeFile = 0o100000
)

func newCPIOWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: bufio.NewWriterSize(w, 1<<20), ino: cpioInoBase, dirs: map[string]bool{".": true, "/": true}}
}

// header writes one entry header followed by the padded name.
func (c *cpioWriter) header(name string, mode uint32, nlink uint32, size int64) error {
	if size > 0xffffffff {
		return fmt.Errorf("cpio entry %s: %d bytes exceed the newc size limit", name, size)
	}
	c.ino++
	nameSize := len(name) + 1
	_, err := fmt.Fprintf(c.w, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, nameSize, 0)
	if err != nil {
		return err
	}
	if _, err := c.w.WriteString(name + "\x00"); err != nil {
		return err
	}
	return c.pad(110 + nameSize)
}

// pad aligns the stream to four bytes after n bytes of header or data.
func (c *cpioWriter) pad(n int) error {
	if r := n % 4; r != 0 {
		_, err := c.w.Write(make([]byte, 4-r))
		return err
	}
	return nil
}

// mkdirAll emits directory entries for dir and its missing parents.
func (c *cpioWriter) mkdirAll(dir string) error {
	dir = strings.TrimPrefix(path.Clean(dir), "/")
	if dir == "" || c.dirs[dir] {
		return nil
	}
	if err := c.mkdirAll(path.Dir(dir)); err != nil {
		return err
	}
	c.dirs[dir] = true
	return c.header(dir, cpioModeDir|0o755, 2, 0)
}

// addBytes adds a regular file with the given content at name (an absolute VM path).
func (c *cpioWriter) addBytes(name string, perm os.FileMode, data []byte) error {
	name = strings.TrimPrefix(path.Clean(name), "/")
	if err := c.mkdirAll(path.Dir(name)); err != nil {
		return err
	}
	if err := c.header(name, cpioModeFile|uint32(perm.Perm()), 1, int64(len(data))); err != nil {
		return err
	}
	if _, err := c.w.Write(data); err != nil {
		return err
	}
	return c.pad(len(data))
}

// addFile copies the host file src to name (an absolute VM path), keeping its permissions.
func (c *cpioWriter) addFile(name, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	name = strings.TrimPrefix(path.Clean(name), "/")
	if err := c.mkdirAll(path.Dir(name)); err != nil {
		return err
	}
	if err := c.header(name, cpioModeFile|uint32(st.Mode().Perm()), 1, st.Size()); err != nil {
		return err
	}
	n, err := io.Copy(c.w, f)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if n != st.Size() {
		return fmt.Errorf("copy %s: file changed size while archiving", src)
	}
	return c.pad(int(n % 4))
}

// Close writes the trailer entry and flushes the archive.
func (c *cpioWriter) Close() error {
	if err := c.header("TRAILER!!!", 0, 1, 0); err != nil {
		return err
	}
	return c.w.Flush()
}

// sortedKeys returns m's keys in order, so archives and scripts are reproducible.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
