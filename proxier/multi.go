package proxier

import (
	"context"
	"errors"
)

// Multi combines proxiers that program disjoint parts of the data plane, typically one
// per IP family for dual-stack nodes. Each gets every sync; a failure of one does not
// stop the others, and the combined error makes the Runner retry all of them with a full
// sync, which is cheap for a backend whose kernel state already matches.
func Multi(ps ...Proxier) Proxier {
	if len(ps) == 1 {
		return ps[0]
	}
	return multi(ps)
}

type multi []Proxier

func (m multi) Sync(ctx context.Context, s *State, c ChangeSet) error {
	var errs []error
	for _, p := range m {
		if err := p.Sync(ctx, s, c); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m multi) Cleanup(ctx context.Context) error {
	var errs []error
	for _, p := range m {
		if err := p.Cleanup(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
