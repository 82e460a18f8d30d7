package ipvs

import "context"

// Batcher is an optional interface of a Kernel that carries out a run of operations
// in fewer kernel round trips than one per operation. Apply uses it for runs of
// consecutive operations with the same Action, which is how a plan is laid out, so a
// cold node's 10,000 Services cost a few hundred system calls instead of 260,000.
//
// Batch behaves like the kernel given a batch of netlink messages: it carries out the
// operations in order, each on its own, and goes on after one fails. It returns nil
// when all succeeded, or one error per operation (nil for those that succeeded),
// classified like the errors of the Kernel method the operation stands for. ops all
// have the same Action, one for which Batchable is true, and at most MaxBatch of
// them; an implementation may send them in several round trips.
//
// Netlink and Fake implement it.
type Batcher interface {
	Batch(ctx context.Context, ops []Op) []error
}

// MaxBatch is the largest run Apply passes to Batch. Bigger batches save little (the
// kernel's work per operation dominates past a few dozen) and must fit the socket
// buffers: every failed operation queues an error answer until the batch is read.
const MaxBatch = 256

// Batchable reports whether Apply batches runs of an action: those that are one
// kernel request each and change state. The device, sets and glue are few and go one
// by one.
func Batchable(a Action) bool {
	switch a {
	case AddEntry, DeleteEntry, AddVirtualServer, UpdateVirtualServer, DeleteVirtualServer,
		AddRealServer, UpdateRealServer, DrainRealServer, DeleteRealServer, BindAddress, UnbindAddress:
		return true
	}
	return false
}

// opName returns the Op* name of the kernel operation a batchable action performs.
func opName(a Action) string {
	switch a {
	case AddEntry:
		return OpAddEntry
	case DeleteEntry:
		return OpDeleteEntry
	case AddVirtualServer:
		return OpAddService
	case UpdateVirtualServer:
		return OpUpdateService
	case DeleteVirtualServer:
		return OpDeleteService
	case AddRealServer:
		return OpAddDestination
	case UpdateRealServer, DrainRealServer:
		return OpUpdateDestination
	case DeleteRealServer:
		return OpDeleteDestination
	case BindAddress:
		return OpAddAddress
	case UnbindAddress:
		return OpDeleteAddress
	}
	return a.String()
}

// batchOneByOne is Batch for a Kernel without a faster way: one call per operation.
func batchOneByOne(ctx context.Context, k Kernel, ops []Op) []error {
	var errs []error
	for i, op := range ops {
		if err := call(ctx, k, op); err != nil {
			if errs == nil {
				errs = make([]error, len(ops))
			}
			errs[i] = err
		}
	}
	return errs
}
