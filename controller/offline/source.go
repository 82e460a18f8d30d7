package offline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-logr/logr"

	"github.com/kproxy/kproxy/proxier"
)

// Options configures a Source.
type Options struct {
	// Path is the YAML file to read.
	Path string
	// Builder receives the objects; required.
	Builder *proxier.Builder
	// Interval is how often the file is checked for changes. Default 1s.
	Interval time.Duration
	// OnError is told about every document or object that was skipped; by default
	// each is logged.
	OnError func(error)
	Logger  logr.Logger
}

// Source keeps a Builder in step with a file: every object in the file is upserted, and
// objects that disappear from the file are deleted, as if an API server had told so.
type Source struct {
	opts     Options
	sum      [sha256.Size]byte
	services map[proxier.ServiceName]struct{}
	slices   map[[2]string]struct{}
}

// New returns a Source; call Load once or Start to keep watching.
func New(opts Options) *Source {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.OnError == nil {
		log := opts.Logger
		opts.OnError = func(err error) { log.Error(err, "Skipping object from offline file") }
	}
	return &Source{opts: opts, services: map[proxier.ServiceName]struct{}{}, slices: map[[2]string]struct{}{}}
}

// Load reads the file and applies it to the Builder, reporting skipped documents and
// invalid objects through OnError. It returns an error only when the file cannot be
// read at all, in which case the model is left as it was.
func (s *Source) Load() error {
	data, err := os.ReadFile(s.opts.Path)
	if err != nil {
		return fmt.Errorf("reading %s: %w", s.opts.Path, err)
	}
	s.loadData(data)
	return nil
}

func (s *Source) loadData(data []byte) {
	s.sum = sha256.Sum256(data)
	objs, errs := Decode(s.opts.Path, bytes.NewReader(data))
	for _, e := range errs {
		s.opts.OnError(e)
	}
	s.apply(objs)
}

// apply upserts everything in objs and deletes what an earlier load had but objs lacks.
func (s *Source) apply(objs *Objects) {
	b := s.opts.Builder
	seenSvc := map[proxier.ServiceName]struct{}{}
	for _, svc := range objs.Services {
		seenSvc[proxier.ServiceName{Namespace: svc.Namespace, Name: svc.Name}] = struct{}{}
		s.report(b.UpsertService(svc), "Service", svc.Namespace, svc.Name)
	}
	seenSlice := map[[2]string]struct{}{}
	for _, sl := range objs.EndpointSlices {
		seenSlice[[2]string{sl.Namespace, sl.Name}] = struct{}{}
		s.report(b.UpsertEndpointSlice(sl), "EndpointSlice", sl.Namespace, sl.Name)
	}
	for _, n := range objs.Nodes {
		s.report(b.SetNode(n), "Node", "", n.Name)
	}
	for name := range s.services {
		if _, ok := seenSvc[name]; !ok {
			b.DeleteService(name)
		}
	}
	for key := range s.slices {
		if _, ok := seenSlice[key]; !ok {
			b.DeleteEndpointSlice(key[0], key[1])
		}
	}
	s.services, s.slices = seenSvc, seenSlice
}

func (s *Source) report(err error, kind, namespace, name string) {
	if err == nil {
		return
	}
	var inv *proxier.InvalidObjectError
	if !errors.As(err, &inv) {
		err = fmt.Errorf("%s: %s %s/%s: %w", s.opts.Path, kind, namespace, name, err)
	} else {
		err = fmt.Errorf("%s: %w", s.opts.Path, err)
	}
	s.opts.OnError(err)
}

// Start loads the file, marks the model initialized, and reloads the file whenever its
// content changes until ctx is cancelled. A file that cannot be read at start is an
// error; later read failures (e.g. while an editor replaces it) keep the last content.
func (s *Source) Start(ctx context.Context) error {
	if err := s.Load(); err != nil {
		return err
	}
	s.opts.Builder.MarkInitialized()
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		data, err := os.ReadFile(s.opts.Path)
		if err != nil || sha256.Sum256(data) == s.sum {
			continue
		}
		s.opts.Logger.Info("Offline file changed; reloading", "path", s.opts.Path)
		s.loadData(data)
	}
}

// NeedLeaderElection lets a Source run as a controller-runtime Runnable on every node.
func (s *Source) NeedLeaderElection() bool { return false }
