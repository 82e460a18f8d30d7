package app

import (
	"context"
	"fmt"

	"github.com/fsnotify/fsnotify"
)

// configWatcher ends kproxy when its --config file changes, as kube-proxy does: the
// configuration is read once, so the DaemonSet's restart is what applies a new one.
// It is a controller-runtime Runnable whose error stops the manager.
type configWatcher struct {
	path string
}

// NeedLeaderElection tells controller-runtime to run the watcher on every node.
func (w *configWatcher) NeedLeaderElection() bool { return false }

// Start watches until ctx is cancelled (nil) or the file is written, renamed or
// removed (an error naming the file).
func (w *configWatcher) Start(ctx context.Context) error {
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching the config file: %w", err)
	}
	defer watcher.Close()
	if err := watcher.Add(w.path); err != nil {
		return fmt.Errorf("watching the config file %s: %w", w.path, err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-watcher.Events:
			if !ok {
				return nil
			}
			if ev.Has(fsnotify.Write) || ev.Has(fsnotify.Rename) || ev.Has(fsnotify.Remove) {
				return fmt.Errorf("the config file %s changed (%s); exiting so that the new configuration is used", w.path, ev.Op)
			}
		case err, ok := <-watcher.Errors:
			if !ok {
				return nil
			}
			return fmt.Errorf("watching the config file %s: %w", w.path, err)
		}
	}
}
