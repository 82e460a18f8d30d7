package iptables

import (
	"bytes"
	"testing"

	"github.com/kproxy/kproxy/proxier"
)

// payloadSize must cover a cold payload, split or not, without overshooting much: it
// sizes the buffer once so that the biggest allocation of a cold sync is made once.
func TestPayloadSizeCoversThePayload(t *testing.T) {
	rs := Render(proxier.NewState(nodeA, syncBenchServices(500, 10)...), RenderOptions{})
	for _, split := range []int{0, 64} {
		pl := planFull(rs, &Saved{})
		pl.splitNames, pl.splitMinRules = split, 1
		var b bytes.Buffer
		writePayload(&b, pl)
		est := payloadSize(pl)
		if est < b.Len() || est > b.Len()*11/10 {
			t.Errorf("split %d: payloadSize = %d for a %d-byte payload, want within +10%%", split, est, b.Len())
		}
	}
}
