package ipvs

import (
	"context"
	"net/netip"
	"sync"

	"github.com/go-logr/logr"
)

// binder binds a plan's addresses on a goroutine of its own while Apply is still
// adding real servers. Binding an address walks every address already on kube-ipvs0
// in the kernel, so 10,000 of them cost as much as 100,000 real servers, but under
// another lock (RTNL, not IPVS's): on a node with more than one CPU the two overlap.
//
// The ordering rule still holds per address: an address is bound only once every
// virtual server on it has all its real servers. Plans list server operations by key,
// address first, so when Apply has finished the operations before index j, every
// address below the lowest address of a pending server operation (the frontier) is
// complete. The binder takes the plan's BindAddress run in order and binds what is
// below the frontier, a batch at a time.
type binder struct {
	ctx        context.Context
	batcher    Batcher
	ops        []Op
	start, end int // the BindAddress run, ops[start:end]
	addEnd     int // the AddRealServer run ends here (it starts where the binder did)
	updStart   int // the UpdateRealServer run, ops[updStart:updEnd]; empty if none
	updEnd     int
	log        logr.Logger

	mu       sync.Mutex
	cond     sync.Cond
	frontier netip.Addr // addresses below it are ready
	all      bool       // every server operation is done: every address is ready
	halted   bool
	next     int   // the next bind to send
	err      error // the first failure, at ops[failed]
	failed   int
	sent     int // end of the last batch sent
	done     chan struct{}
}

// runOf returns the run of action a in ops (a plan holds each action's operations
// together), or an empty run at the end.
func runOf(ops []Op, a Action) (start, end int) {
	start = len(ops)
	for i, op := range ops {
		if op.Action == a {
			start = i
			break
		}
	}
	end = start
	for end < len(ops) && ops[end].Action == a {
		end++
	}
	return start, end
}

// startBinder starts binding the plan's addresses, if it has any, as Apply reaches
// the AddRealServer run at ops[i] (every earlier operation is applied).
func startBinder(ctx context.Context, b Batcher, ops []Op, i int, log logr.Logger) *binder {
	start, end := runOf(ops, BindAddress)
	if start == end || start < i {
		return nil
	}
	_, addEnd := runOf(ops[i:], AddRealServer)
	updStart, updEnd := runOf(ops[i:], UpdateRealServer)
	bd := &binder{ctx: ctx, batcher: b, ops: ops, start: start, end: end, addEnd: i + addEnd,
		updStart: i + updStart, updEnd: i + updEnd, log: log, next: start, sent: start, done: make(chan struct{})}
	bd.cond.L = &bd.mu
	bd.advance(i)
	go bd.run()
	return bd
}

// advance tells the binder that ops[:j] are applied. The pending server operations
// are the rest of the AddRealServer run and of the UpdateRealServer run; each is
// sorted by address, so the lowest pending address is the first of one of them.
func (bd *binder) advance(j int) {
	var frontier netip.Addr
	all := true
	consider := func(k int) {
		if a := bd.ops[k].Key.Addr; all || a.Less(frontier) {
			frontier = a
		}
		all = false
	}
	if j < bd.addEnd {
		consider(j)
	}
	if u := max(j, bd.updStart); u < bd.updEnd {
		consider(u)
	}
	bd.mu.Lock()
	bd.frontier, bd.all = frontier, all
	bd.mu.Unlock()
	bd.cond.Broadcast()
}

// ready reports whether the address of ops[i] may be bound; bd.mu is held.
func (bd *binder) ready(i int) bool { return bd.all || bd.ops[i].Addr.Less(bd.frontier) }

func (bd *binder) run() {
	defer close(bd.done)
	for {
		bd.mu.Lock()
		for !bd.halted && bd.next < bd.end && !bd.ready(bd.next) {
			bd.cond.Wait()
		}
		if bd.halted || bd.next == bd.end {
			bd.mu.Unlock()
			return
		}
		i, n := bd.next, 0
		for i+n < bd.end && n < MaxBatch && bd.ready(i+n) {
			n++
		}
		bd.mu.Unlock()

		var err error
		failed := i
		if err = bd.ctx.Err(); err == nil {
			for j, e := range bd.batcher.Batch(bd.ctx, bd.ops[i:i+n]) {
				if e = tolerate(BindAddress, e); e != nil {
					err, failed = e, i+j
					break
				}
			}
		}
		if err == nil && bd.log.V(5).Enabled() {
			for _, op := range bd.ops[i : i+n] {
				bd.log.V(5).Info("Applied", "op", op.String())
			}
		}
		bd.mu.Lock()
		bd.next, bd.sent = i+n, i+n
		if err != nil {
			bd.err, bd.failed, bd.halted = err, failed, true
		}
		bd.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// finish lets the binder bind what is left, now that every server operation is
// done, waits for it, and returns its failure, if any: the failed bind's index and
// the end of the batches it sent.
func (bd *binder) finish() (failed, sent int, err error) {
	bd.advance(bd.start)
	<-bd.done
	return bd.failed, bd.sent, bd.err
}

// halt stops the binder after the batch it is sending, if any, and waits for it.
func (bd *binder) halt() {
	bd.mu.Lock()
	bd.halted = true
	bd.mu.Unlock()
	bd.cond.Broadcast()
	<-bd.done
}
