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
// Outcomes that already match the goal are not failures: deleting something already
// gone, binding an address or adding a set member already present.
func Apply(ctx context.Context, k Kernel, glue iptables.Kernel, ops []Op, log logr.Logger) error {
	for i, op := range ops {
		if err := ctx.Err(); err != nil {
			return stopped(log, i, ops, err)
		}
		if err := applyOne(ctx, k, glue, op); err != nil {
			return stopped(log, i, ops, err)
		}
		if log.V(5).Enabled() {
			log.V(5).Info("Applied", "op", op.String())
		}
	}
	return nil
}

// stopped logs and builds the error of a plan cut short at ops[i].
func stopped(log logr.Logger, i int, ops []Op, err error) error {
	log.Error(err, "IPVS plan stopped part-way; the next full sync repairs it",
		"applied", i, "total", len(ops), "failedOp", ops[i].String())
	if i > 0 && log.V(2).Enabled() {
		applied := make([]string, 0, min(i, 50))
		for _, op := range ops[:min(i, 50)] {
			applied = append(applied, op.String())
		}
		log.V(2).Info("Operations applied before the failure", "ops", applied, "truncated", i > 50)
	}
	return &ApplyError{Applied: i, Total: len(ops), Op: ops[i], Err: err}
}

// applyOne performs one operation.
func applyOne(ctx context.Context, k Kernel, glue iptables.Kernel, op Op) error {
	switch op.Action {
	case EnsureDevice:
		_, err := k.EnsureDevice(ctx)
		return err
	case CreateSet:
		return ignore(k.CreateSet(ctx, *op.Set), ErrExist)
	case AddEntry:
		return ignore(k.AddEntry(ctx, op.Set.Name, op.Entry), ErrExist)
	case AddVirtualServer:
		return k.AddVirtualServer(ctx, op.Server)
	case UpdateVirtualServer:
		return k.UpdateVirtualServer(ctx, op.Server)
	case AddRealServer:
		return k.AddRealServer(ctx, op.Key, op.Real)
	case UpdateRealServer, DrainRealServer:
		return k.UpdateRealServer(ctx, op.Key, op.Real)
	case BindAddress:
		return ignore(k.AddAddress(ctx, op.Addr), ErrExist)
	case RestoreGlue:
		if glue == nil {
			return nil
		}
		return glue.Restore(ctx, iptablesFamily(op.Family), op.Glue, iptables.RestoreOptions{})
	case EnsureJumps:
		if glue == nil {
			return nil
		}
		for _, j := range Jumps() {
			if _, err := glue.EnsureJump(ctx, iptablesFamily(op.Family), j); err != nil {
				return err
			}
		}
		return nil
	case DeleteRealServer:
		return ignore(k.DeleteRealServer(ctx, op.Key, op.Real.Addr), ErrNotFound)
	case DeleteVirtualServer:
		return ignore(k.DeleteVirtualServer(ctx, op.Key), ErrNotFound)
	case UnbindAddress:
		return ignore(k.DeleteAddress(ctx, op.Addr), ErrNotFound)
	case DeleteEntry:
		return ignore(k.DeleteEntry(ctx, op.Set.Name, op.Entry), ErrNotFound)
	}
	return &KernelError{Op: op.Action.String(), Err: errors.New("unknown action")}
}

// ignore drops errors of the given class.
func ignore(err, class error) error {
	if errors.Is(err, class) {
		return nil
	}
	return err
}
