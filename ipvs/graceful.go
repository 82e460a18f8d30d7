package ipvs

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"time"
)

// Graceful termination. When a TCP endpoint goes away, its real server is not deleted
// at once: Plan sets its weight to 0 ("drains" it), so IPVS schedules no new
// connection to it while established ones carry on, and the drainer deletes it once
// the kernel counts no connection through it, or once PlanOptions.GracefulTimeout has
// passed. UDP and SCTP real servers are deleted at once and their conntrack entries
// cleared, as kube-proxy does.
//
// Unlike kube-proxy, which forgets its drain list when it restarts and leaves
// weight-0 real servers behind forever, a drained real server is recognisable in the
// kernel by its weight: every full sync picks up weight-0 real servers that are not
// desired, deletes the idle ones and tracks the rest here. A draining endpoint that
// comes back simply gets its weight back; its connections were never broken.

// drainKey names one draining real server.
type drainKey struct {
	vs VSKey
	rs netip.AddrPort
}

// drainer remembers since when each real server has been draining. It is not
// synchronised: the proxier's mutex guards it.
type drainer struct {
	since map[drainKey]time.Time
}

func newDrainer() *drainer { return &drainer{since: map[drainKey]time.Time{}} }

// track starts the clock of a draining real server, unless it is running already.
func (d *drainer) track(k drainKey, now time.Time) {
	if _, ok := d.since[k]; !ok {
		d.since[k] = now
	}
}

// forget stops tracking a real server (deleted, or desired again).
func (d *drainer) forget(k drainKey) { delete(d.since, k) }

// forgetServer stops tracking every real server of a virtual server.
func (d *drainer) forgetServer(vs VSKey) {
	maps.DeleteFunc(d.since, func(k drainKey, _ time.Time) bool { return k.vs == vs })
}

// replace keeps exactly keys, with their old start times where known.
func (d *drainer) replace(keys []drainKey, now time.Time) {
	next := make(map[drainKey]time.Time, len(keys))
	for _, k := range keys {
		if t, ok := d.since[k]; ok {
			next[k] = t
		} else {
			next[k] = now
		}
	}
	d.since = next
}

// servers returns the virtual servers with draining real servers, sorted.
func (d *drainer) servers() []VSKey {
	set := map[VSKey]struct{}{}
	for k := range d.since {
		set[k.vs] = struct{}{}
	}
	return slices.SortedFunc(maps.Keys(set), VSKey.Compare)
}

// len returns the number of draining real servers.
func (d *drainer) len() int { return len(d.since) }

// reap deletes the draining real servers of the given virtual servers (all when
// servers is nil) that carry no connection any more or have drained for longer than
// timeout, reading each virtual server's real servers once. It updates the proxier's
// cache through remove. Errors are collected; a failed deletion is retried next time.
func (d *drainer) reap(ctx context.Context, k Kernel, servers []VSKey, timeout time.Duration, now time.Time,
	remove func(VSKey, netip.AddrPort)) (deleted int, err error) {
	if servers == nil {
		servers = d.servers()
	}
	var errs []error
	for _, vs := range servers {
		reals, lerr := k.RealServers(ctx, vs)
		if errors.Is(lerr, ErrNotFound) {
			d.forgetServer(vs)
			continue
		}
		if lerr != nil {
			errs = append(errs, lerr)
			continue
		}
		for key, since := range d.since {
			if key.vs != vs {
				continue
			}
			i, found := slices.BinarySearchFunc(reals, key.rs, func(r RealServer, a netip.AddrPort) int { return r.Addr.Compare(a) })
			if !found || reals[i].Weight != 0 {
				// Gone, or given its weight back by someone: not ours to delete.
				d.forget(key)
				continue
			}
			if !reals[i].idle() && now.Sub(since) < timeout {
				continue
			}
			if derr := ignore(k.DeleteRealServer(ctx, vs, key.rs), ErrNotFound); derr != nil {
				errs = append(errs, derr)
				continue
			}
			d.forget(key)
			remove(vs, key.rs)
			deleted++
		}
	}
	return deleted, errors.Join(errs...)
}
