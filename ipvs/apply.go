package ipvs

import (
	"context"
	"errors"

	"github.com/go-logr/logr"

	"github.com/kproxy/kproxy/iptables"
)

// Apply carries out a plan in order: IPVS, device and ipset operations through k, the
// glue through glue (nil skips the glue operations). IPVS has no transactions, so
// Apply cannot be all-or-nothing; instead it stops at the first failure, logs what was
// applied, and returns an *ApplyError. Because Plan orders additions before removals,
// a plan cut short leaves every service at least as reachable as before, and the next
// full sync reads the kernel back and converges from there.
//
// When k is a Batcher, runs of the same batchable action go to the kernel up to
// MaxBatch at a time. The kernel carries on past a failed operation within a batch,
// so the operations after the failed one in its batch may be applied too; they are of
// the same action, so the ordering guarantees above still hold (an addition after a
// failed addition, a removal after a failed removal). Addresses are then bound on a
// second goroutine while real servers are still being added, each as soon as every
// virtual server on it is complete (see binder); a failure stops both after their
// current batch.
//
// Outcomes that already match the goal are not failures: deleting something already
// gone, binding an address or adding a set member already present.
func Apply(ctx context.Context, k Kernel, glue iptables.Kernel, ops []Op, log logr.Logger) error {
	batcher, _ := k.(Batcher)
	var bd *binder
	binderTried := false
	defer func() {
		if bd != nil {
			bd.halt()
		}
	}()
	for i := 0; i < len(ops); {
		if err := ctx.Err(); err != nil {
			return stopped(log, i, i+1, ops, err)
		}
		if batcher != nil && !binderTried && ops[i].Action == AddRealServer {
			bd, binderTried = startBinder(ctx, batcher, ops, i, log), true
		}
		if bd != nil && ops[i].Action == BindAddress {
			failed, sent, err := bd.finish()
			if err != nil {
				return stopped(log, failed, sent, ops, err)
			}
			i = bd.end
			continue
		}
		n := 1
		if batcher != nil && Batchable(ops[i].Action) {
			for i+n < len(ops) && n < MaxBatch && ops[i+n].Action == ops[i].Action {
				n++
			}
		}
		if n == 1 {
			if err := applyOne(ctx, k, glue, ops[i]); err != nil {
				return stopped(log, i, i+1, ops, err)
			}
		} else {
			errs := batcher.Batch(ctx, ops[i:i+n])
			for j, err := range errs {
				if err := tolerate(ops[i+j].Action, err); err != nil {
					return stopped(log, i+j, i+n, ops, err)
				}
			}
		}
		if log.V(5).Enabled() {
			for _, op := range ops[i : i+n] {
				log.V(5).Info("Applied", "op", op.String())
			}
		}
		i += n
		if bd != nil {
			bd.advance(i)
		}
	}
	return nil
}

// stopped logs and builds the error of a plan cut short at ops[i]; ops[i+1:attempted]
// were sent in the same batch and may have been applied.
func stopped(log logr.Logger, i, attempted int, ops []Op, err error) error {
	log.Error(err, "IPVS plan stopped part-way; the next full sync repairs it",
		"applied", i, "total", len(ops), "failedOp", ops[i].String(),
		"attemptedAfterFailure", attempted-i-1)
	if i > 0 && log.V(2).Enabled() {
		applied := make([]string, 0, min(i, 50))
		for _, op := range ops[:min(i, 50)] {
			applied = append(applied, op.String())
		}
		log.V(2).Info("Operations applied before the failure", "ops", applied, "truncated", i > 50)
	}
	return &ApplyError{Applied: i, Attempted: attempted, Total: len(ops), Op: ops[i], Err: err}
}

// applyOne performs one operation.
func applyOne(ctx context.Context, k Kernel, glue iptables.Kernel, op Op) error {
	switch op.Action {
	case RestoreGlue:
		if glue == nil {
			return nil
		}
		return glue.Restore(ctx, iptablesFamily(op.Family), op.Glue, iptables.RestoreOptions{})
	case EnsureJumps:
		if glue == nil {
			return nil
		}
		_, err := iptables.EnsureJumps(ctx, glue, iptablesFamily(op.Family), Jumps())
		return err
	}
	return tolerate(op.Action, call(ctx, k, op))
}

// call performs one kernel operation and returns its error as the kernel gave it.
func call(ctx context.Context, k Kernel, op Op) error {
	switch op.Action {
	case EnsureDevice:
		_, err := k.EnsureDevice(ctx)
		return err
	case CreateSet:
		return k.CreateSet(ctx, *op.Set)
	case AddEntry:
		return k.AddEntry(ctx, op.Set.Name, op.Entry)
	case DeleteEntry:
		return k.DeleteEntry(ctx, op.Set.Name, op.Entry)
	case AddVirtualServer:
		return k.AddVirtualServer(ctx, op.Server)
	case UpdateVirtualServer:
		return k.UpdateVirtualServer(ctx, op.Server)
	case DeleteVirtualServer:
		return k.DeleteVirtualServer(ctx, op.Key)
	case AddRealServer:
		return k.AddRealServer(ctx, op.Key, op.Real)
	case UpdateRealServer, DrainRealServer:
		return k.UpdateRealServer(ctx, op.Key, op.Real)
	case DeleteRealServer:
		return k.DeleteRealServer(ctx, op.Key, op.Real.Addr)
	case BindAddress:
		return k.AddAddress(ctx, op.Addr)
	case UnbindAddress:
		return k.DeleteAddress(ctx, op.Addr)
	}
	return &KernelError{Op: op.Action.String(), Err: errors.New("unknown action")}
}

// tolerate drops the errors that mean an operation's goal is already met: creating
// what exists, deleting what is gone.
func tolerate(a Action, err error) error {
	switch a {
	case CreateSet, AddEntry, BindAddress:
		return ignore(err, ErrExist)
	case DeleteRealServer, DeleteVirtualServer, UnbindAddress, DeleteEntry:
		return ignore(err, ErrNotFound)
	}
	return err
}

// ignore drops errors of the given class.
func ignore(err, class error) error {
	if errors.Is(err, class) {
		return nil
	}
	return err
}
