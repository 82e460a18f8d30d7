package vm

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// cpioEntry is one entry read back from a newc archive.
type cpioEntry struct {
	name string
	mode uint32
	data string
}

// readCPIO parses a newc archive the way the kernel does, checking alignment as it goes.
func readCPIO(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	for {
		if off%4 != 0 {
			t.Fatalf("entry at offset %d is not four-byte aligned", off)
		}
		h := b[off : off+110]
		if string(h[:6]) != "070701" {
			t.Fatalf("bad magic %q at offset %d", h[:6], off)
		}
		field := func(i int) int {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("header field %d: %v", i, err)
			}
			return int(v)
		}
		mode, size, nameSize := field(1), field(6), field(11)
		name := string(b[off+110 : off+110+nameSize-1])
		off += 110 + nameSize
		off = (off + 3) &^ 3
		data := string(b[off : off+size])
		off += size
		off = (off + 3) &^ 3
		if name == "TRAILER!!!" {
			return out
		}
		out = append(out, cpioEntry{name: name, mode: uint32(mode), data: data})
	}
}

func TestCPIOWriterCreatesParentsAndPads(t *testing.T) {
	dir := t.TempDir()
	host := filepath.Join(dir, "tool")
	if err := os.WriteFile(host, []byte("12345"), 0o750); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	c := newCPIOWriter(&buf)
	if err := c.addBytes("/init", 0o755, []byte("#!/bin/sh\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.addFile("/usr/local/bin/tool", host); err != nil {
		t.Fatal(err)
	}
	if err := c.addBytes("/usr/local/etc/x", 0o644, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	got := readCPIO(t, buf.Bytes())
	want := []cpioEntry{
		{"init", cpioModeFile | 0o755, "#!/bin/sh\n"},
		{"usr", cpioModeDir | 0o755, ""},
		{"usr/local", cpioModeDir | 0o755, ""},
		{"usr/local/bin", cpioModeDir | 0o755, ""},
		{"usr/local/bin/tool", cpioModeFile | 0o750, "12345"},
		{"usr/local/etc", cpioModeDir | 0o755, ""},
		{"usr/local/etc/x", cpioModeFile | 0o644, ""},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestWriteInitrdAlignsSecondArchive(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	// An odd-length stand-in for the compressed base archive.
	if err := os.WriteFile(base, []byte("\x1f\x8b12345"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "pkg.test")
	if err := os.WriteFile(bin, []byte("ELF"), 0o755); err != nil {
		t.Fatal(err)
	}
	extra := filepath.Join(dir, "extra")
	if err := os.MkdirAll(filepath.Join(extra, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(extra, "sub", "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "initrd")
	err := writeInitrd(dst, initrdSpec{
		Base:       base,
		Init:       []byte("init"),
		Binaries:   map[string]string{"/kproxy-vm/tests/pkg.test": bin},
		ExtraFiles: map[string]string{extra: "/opt/extra"},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[:7], []byte("\x1f\x8b12345")) || !bytes.Equal(b[7:8], []byte{0}) {
		t.Fatalf("base not copied and zero-padded: %q", b[:8])
	}
	names := map[string]string{}
	for _, e := range readCPIO(t, b[8:]) {
		names[e.name] = e.data
	}
	for name, data := range map[string]string{"init": "init", "kproxy-vm/tests/pkg.test": "ELF", "opt/extra/sub/f": "x"} {
		if got, ok := names[name]; !ok || got != data {
			t.Errorf("%s: got %q (present %v), want %q", name, got, ok, data)
		}
	}
}
