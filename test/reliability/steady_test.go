package reliability

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kproxy/kproxy/test/netns"
)

// targets are what the prober connects to.
func (w *world) targets() []target {
	return []target{{"ClusterIP", w.clusterIP}, {"NodePort", w.nodePort}}
}

// waitServing waits until both Services answer from the client, through p's rules.
func (w *world) waitServing(t *testing.T, p *proxy) {
	t.Helper()
	for _, tg := range w.targets() {
		netns.Eventually(t, 90*time.Second, tg.name+" answers", func() error {
			if err := p.alive(); err != nil {
				return err
			}
			_, err := w.client.DialTCP(t.Context(), tg.addr, time.Second)
			return err
		})
	}
}

// waitSynced waits until p (a kproxy) has finished its first sync: its metrics
// server answers and counts one.
func (w *world) waitSynced(t *testing.T, p *proxy) {
	t.Helper()
	netns.Eventually(t, 90*time.Second, p.name+" has synced", func() error {
		if err := p.alive(); err != nil {
			return err
		}
		m, err := w.metrics()
		if err != nil {
			return err
		}
		if metric(m, "kubeproxy_sync_proxy_rules_duration_seconds_count") < 1 {
			return errors.New("no sync yet")
		}
		return nil
	})
}

// longLived is an established connection through a Service that must keep reaching
// the same pod.
type longLived struct {
	name   string
	conn   *netns.Conn
	server string
}

// openLongLived opens a connection to tg from the client and exchanges a first line.
func (w *world) openLongLived(t *testing.T, tg target) *longLived {
	t.Helper()
	c, err := w.client.OpenTCP(t.Context(), tg.addr, 2*time.Second)
	if err != nil {
		t.Fatalf("opening a long-lived connection to %s: %v", tg.name, err)
	}
	t.Cleanup(func() { c.Close() })
	rep, err := c.Exchange(2 * time.Second)
	if err != nil {
		t.Fatalf("first exchange on the long-lived connection to %s: %v", tg.name, err)
	}
	return &longLived{name: tg.name, conn: c, server: rep.Server}
}

// check exchanges a line and fails the test unless the same pod answers.
func (l *longLived) check(t *testing.T, when string) {
	t.Helper()
	rep, err := l.conn.Exchange(2 * time.Second)
	switch {
	case err != nil:
		t.Errorf("the established connection to %s broke %s: %s: %v", l.name, when, netns.Classify(err), err)
	case rep.Server != l.server:
		t.Errorf("the established connection to %s reached %s %s, it was connected to %s", l.name, rep.Server, when, l.server)
	}
}

// syncLine matches the V(2) line kproxy's iptables proxier logs after every sync.
var syncLine = regexp.MustCompile(`"Synced iptables rules".*family="(IPv[46])" full=(\w+) sampled=(\d+) chainsWritten=(\d+) chainsDeleted=(\d+) payloadBytes=(\d+) restores=(\d+)`)

// syncRecord is one logged sync of one family.
type syncRecord struct {
	family                     string
	full                       bool
	written, deleted, restores int
	payloadBytes               int
}

// syncs returns the syncs p logged, in order.
func (p *proxy) syncs() []syncRecord {
	var out []syncRecord
	for line := range strings.Lines(p.logs.String()) {
		m := syncLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var r syncRecord
		r.family, r.full = m[1], m[2] == "true"
		fmt.Sscan(m[4], &r.written)
		fmt.Sscan(m[5], &r.deleted)
		fmt.Sscan(m[6], &r.payloadBytes)
		fmt.Sscan(m[7], &r.restores)
		out = append(out, r)
	}
	return out
}
