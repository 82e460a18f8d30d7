package ipvs

import (
	"context"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kproxy/kproxy/proxier"
)

// countingKernel counts every call of a Kernel in kproxy_netlink_operations_total,
// labelled with the operation name, whatever the implementation (so the counts are
// the same against the Fake, which tests rely on).
type countingKernel struct {
	k   Kernel
	ops map[string]prometheus.Counter
}

var allOps = []string{
	OpListServices, OpListDestinations, OpAddService, OpUpdateService, OpDeleteService,
	OpAddDestination, OpUpdateDestination, OpDeleteDestination, OpSetTimeouts,
	OpEnsureDevice, OpDeleteDevice, OpListAddresses, OpAddAddress, OpDeleteAddress,
	OpListHostAddresses, OpListSet, OpCreateSet, OpDestroySet, OpAddEntry, OpDeleteEntry,
	OpGetSysctl, OpSetSysctl, OpKernelVersion,
}

// withMetrics wraps k so that its calls are counted in vec; a nil vec returns k.
func withMetrics(k Kernel, vec *prometheus.CounterVec) Kernel {
	if vec == nil {
		return k
	}
	c := &countingKernel{k: k, ops: make(map[string]prometheus.Counter, len(allOps))}
	for _, op := range allOps {
		c.ops[op] = vec.WithLabelValues(op)
	}
	return c
}

func (c *countingKernel) inc(op string) { c.ops[op].Inc() }

// Batch counts every operation of the batch, like the calls it stands for, and passes
// the batch on, one by one if the wrapped Kernel cannot batch.
func (c *countingKernel) Batch(ctx context.Context, ops []Op) []error {
	for _, op := range ops {
		c.inc(opName(op.Action))
	}
	if b, ok := c.k.(Batcher); ok {
		return b.Batch(ctx, ops)
	}
	return batchOneByOne(ctx, c.k, ops)
}

func (c *countingKernel) VirtualServers(ctx context.Context, f proxier.IPFamily) ([]*VirtualServer, error) {
	c.inc(OpListServices)
	return c.k.VirtualServers(ctx, f)
}

func (c *countingKernel) RealServers(ctx context.Context, vs VSKey) ([]RealServer, error) {
	c.inc(OpListDestinations)
	return c.k.RealServers(ctx, vs)
}

func (c *countingKernel) AddVirtualServer(ctx context.Context, vs *VirtualServer) error {
	c.inc(OpAddService)
	return c.k.AddVirtualServer(ctx, vs)
}

func (c *countingKernel) UpdateVirtualServer(ctx context.Context, vs *VirtualServer) error {
	c.inc(OpUpdateService)
	return c.k.UpdateVirtualServer(ctx, vs)
}

func (c *countingKernel) DeleteVirtualServer(ctx context.Context, vs VSKey) error {
	c.inc(OpDeleteService)
	return c.k.DeleteVirtualServer(ctx, vs)
}

func (c *countingKernel) AddRealServer(ctx context.Context, vs VSKey, rs RealServer) error {
	c.inc(OpAddDestination)
	return c.k.AddRealServer(ctx, vs, rs)
}

func (c *countingKernel) UpdateRealServer(ctx context.Context, vs VSKey, rs RealServer) error {
	c.inc(OpUpdateDestination)
	return c.k.UpdateRealServer(ctx, vs, rs)
}

func (c *countingKernel) DeleteRealServer(ctx context.Context, vs VSKey, rs netip.AddrPort) error {
	c.inc(OpDeleteDestination)
	return c.k.DeleteRealServer(ctx, vs, rs)
}

func (c *countingKernel) SetTimeouts(ctx context.Context, t Timeouts) error {
	c.inc(OpSetTimeouts)
	return c.k.SetTimeouts(ctx, t)
}

func (c *countingKernel) EnsureDevice(ctx context.Context) (bool, error) {
	c.inc(OpEnsureDevice)
	return c.k.EnsureDevice(ctx)
}

func (c *countingKernel) DeleteDevice(ctx context.Context) error {
	c.inc(OpDeleteDevice)
	return c.k.DeleteDevice(ctx)
}

func (c *countingKernel) DeviceAddresses(ctx context.Context, f proxier.IPFamily) ([]netip.Addr, bool, error) {
	c.inc(OpListAddresses)
	return c.k.DeviceAddresses(ctx, f)
}

func (c *countingKernel) AddAddress(ctx context.Context, a netip.Addr) error {
	c.inc(OpAddAddress)
	return c.k.AddAddress(ctx, a)
}

func (c *countingKernel) DeleteAddress(ctx context.Context, a netip.Addr) error {
	c.inc(OpDeleteAddress)
	return c.k.DeleteAddress(ctx, a)
}

func (c *countingKernel) HostAddresses(ctx context.Context, f proxier.IPFamily) ([]netip.Addr, error) {
	c.inc(OpListHostAddresses)
	return c.k.HostAddresses(ctx, f)
}

func (c *countingKernel) ListSet(ctx context.Context, name string) (*SetContent, error) {
	c.inc(OpListSet)
	return c.k.ListSet(ctx, name)
}

func (c *countingKernel) CreateSet(ctx context.Context, spec SetSpec) error {
	c.inc(OpCreateSet)
	return c.k.CreateSet(ctx, spec)
}

func (c *countingKernel) DestroySet(ctx context.Context, name string) error {
	c.inc(OpDestroySet)
	return c.k.DestroySet(ctx, name)
}

func (c *countingKernel) AddEntry(ctx context.Context, set string, e SetEntry) error {
	c.inc(OpAddEntry)
	return c.k.AddEntry(ctx, set, e)
}

func (c *countingKernel) DeleteEntry(ctx context.Context, set string, e SetEntry) error {
	c.inc(OpDeleteEntry)
	return c.k.DeleteEntry(ctx, set, e)
}

func (c *countingKernel) Sysctl(ctx context.Context, name string) (string, error) {
	c.inc(OpGetSysctl)
	return c.k.Sysctl(ctx, name)
}

func (c *countingKernel) SetSysctl(ctx context.Context, name, value string) error {
	c.inc(OpSetSysctl)
	return c.k.SetSysctl(ctx, name, value)
}

func (c *countingKernel) KernelVersion(ctx context.Context) (int, int, error) {
	c.inc(OpKernelVersion)
	return c.k.KernelVersion(ctx)
}
