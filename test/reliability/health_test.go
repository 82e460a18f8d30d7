package reliability

import (
	"fmt"
	"sync"
	"time"
)

// healthWatch polls /healthz every 250 ms and keeps every answer that is not the truth
// for a proxy whose syncs keep succeeding: 200, nodeEligible, and (as kube-proxy
// reports a healthy proxy) lastUpdated equal to currentTime.
type healthWatch struct {
	w     *world
	stop  chan struct{}
	done  sync.WaitGroup
	mu    sync.Mutex
	polls int
	bad   []string
}

func (w *world) watchHealth() *healthWatch {
	h := &healthWatch{w: w, stop: make(chan struct{})}
	h.done.Go(h.run)
	return h
}

func (h *healthWatch) run() {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-tick.C:
		}
		at := time.Now()
		r, err := h.w.healthz()
		var problem string
		switch {
		case err != nil:
			problem = err.Error()
		case r.Code != 200 || !r.NodeEligible || r.LastUpdated != r.CurrentTime:
			problem = fmt.Sprintf("%+v", r)
		}
		h.mu.Lock()
		h.polls++
		if problem != "" {
			h.bad = append(h.bad, at.Format("15:04:05.000")+": "+problem)
		}
		h.mu.Unlock()
	}
}

// Stop ends the polling and returns how many polls were made and the bad answers.
func (h *healthWatch) Stop() (int, []string) {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	h.done.Wait()
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.polls, h.bad
}
