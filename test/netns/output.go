package netns

import (
	"bytes"
	"sync"
)

// Output collects what a process started with NS.Command prints. Set it as both
// Stdout and Stderr: os/exec copies each pipe from its own goroutine, so the writes
// must be serialised, and a test may read the output while the process still runs.
type Output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

// String returns everything written so far.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}
