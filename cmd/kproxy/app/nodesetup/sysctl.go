package nodesetup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/go-logr/logr"
)

// Paths locate the files the settings are written to; the zero value means the real
// ones. Tests point them into a temporary directory.
type Paths struct {
	// ProcSys is /proc/sys.
	ProcSys string
	// ConntrackHashsize is /sys/module/nf_conntrack/parameters/hashsize.
	ConntrackHashsize string
	// OOMScoreAdj is /proc/self/oom_score_adj.
	OOMScoreAdj string
}

func (p Paths) withDefaults() Paths {
	if p.ProcSys == "" {
		p.ProcSys = "/proc/sys"
	}
	if p.ConntrackHashsize == "" {
		p.ConntrackHashsize = "/sys/module/nf_conntrack/parameters/hashsize"
	}
	if p.OOMScoreAdj == "" {
		p.OOMScoreAdj = "/proc/self/oom_score_adj"
	}
	return p
}

// ErrSkipped marks a setting that could not be applied because its file is missing or
// read-only; callers log it and carry on.
var ErrSkipped = errors.New("skipped")

// Setter writes kernel settings under Paths, logging what it changes.
type Setter struct {
	Paths  Paths
	Logger logr.Logger
}

func (s *Setter) paths() Paths { return s.Paths.withDefaults() }

// sysctlPath maps "net/ipv4/conf/all/route_localnet" or its dotted form to a file.
func (s *Setter) sysctlPath(name string) string {
	return filepath.Join(s.paths().ProcSys, strings.ReplaceAll(name, ".", "/"))
}

// GetSysctl reads an integer sysctl.
func (s *Setter) GetSysctl(name string) (int, error) {
	return readInt(s.sysctlPath(name))
}

// SetSysctl writes an integer sysctl when it differs. A missing or read-only file gives
// an error wrapping ErrSkipped.
func (s *Setter) SetSysctl(name string, value int) error {
	return s.writeInt("sysctl "+strings.ReplaceAll(name, "/", "."), s.sysctlPath(name), value, false)
}

// writeInt writes value to path unless it is already there (or, with atLeast, already
// greater).
func (s *Setter) writeInt(what, path string, value int, atLeast bool) error {
	cur, err := readInt(path)
	if err != nil {
		return classify(what, err)
	}
	if cur == value || (atLeast && cur > value) {
		return nil
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(value)+"\n"), 0o644); err != nil {
		return classify(what, err)
	}
	s.Logger.Info("Set kernel setting", "setting", what, "from", cur, "to", value)
	return nil
}

// classify wraps ErrSkipped around errors that mean "this environment does not let us
// change it": missing file (module not loaded, setting not namespaced) or no permission.
func classify(what string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) ||
		errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
		return fmt.Errorf("%s: %w: %w", what, ErrSkipped, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func readInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	// Some files hold several fields (tabs); the first is the value.
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("%s is empty", path)
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// apply runs one setting, logging and swallowing ErrSkipped.
func (s *Setter) apply(err error) error {
	if errors.Is(err, ErrSkipped) {
		s.Logger.Info("Leaving a kernel setting as it is: it cannot be changed here", "reason", err.Error())
		return nil
	}
	return err
}
