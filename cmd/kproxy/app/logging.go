package app

import (
	"fmt"
	"io"
	"strings"

	"github.com/go-logr/logr"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"
	ctrl "sigs.k8s.io/controller-runtime"
)

// newLogger returns kproxy's logger (klog's text format, as kube-proxy's default) with
// the configured verbosity and per-file levels, and makes it the logger of klog (used by
// client-go) and controller-runtime too. The configuration must have been validated.
func newLogger(c logsapi.LoggingConfiguration, w io.Writer) logr.Logger {
	cfg := textlogger.NewConfig(textlogger.Verbosity(int(c.Verbosity)), textlogger.Output(w))
	if len(c.VModule) > 0 {
		parts := make([]string, len(c.VModule))
		for i, m := range c.VModule {
			parts[i] = fmt.Sprintf("%s=%d", m.FilePattern, m.Verbosity)
		}
		// Validated by the flag parser or the file decoder; cannot fail here.
		_ = cfg.VModule().Set(strings.Join(parts, ","))
	}
	log := textlogger.NewLogger(cfg)
	klog.SetLoggerWithOptions(log, klog.ContextualLogger(true))
	ctrl.SetLogger(log)
	return log
}
