package fuzz

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"sync/atomic"
	"testing"

	"github.com/kproxy/kproxy/controller/offline"
	"github.com/kproxy/kproxy/proxier"
)

// execEvery is how often a fuzzed input (as opposed to a seed) is also checked by the
// real iptables-restore: an exec costs about as much as a hundred in-memory checks.
const execEvery = 50

// fuzzing reports whether the test binary runs with -fuzz; without it only the seed
// corpus runs, and every seed gets the real iptables-restore check.
func fuzzing() bool {
	f := flag.Lookup("test.fuzz")
	return f != nil && f.Value.String() != ""
}

// FuzzModelRender builds a cluster from the input (see scenario), runs it through the
// model and the renderer of both families, and checks the model's invariants, the
// payload's structure, iptables-restore --test and the tracer against the model.
func FuzzModelRender(f *testing.F) {
	rt := newRestoreTester(f)
	sample := fuzzing()
	rt.alternate = sample
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, data []byte) {
		s := decodeScenario(data)
		if err := checkScenario(context.Background(), s, rt, !sample || n.Add(1)%execEvery == 0); err != nil {
			t.Fatalf("%v\nscenario: %+v", err, *s)
		}
	})
}

// checkScenario runs one scenario through everything; rt may be nil to skip the
// kernel check.
func checkScenario(ctx context.Context, s *scenario, rt *restoreTester, exec bool) error {
	objs := buildObjects(s)
	m, err := buildModel(objs, s.SlicesFirst == 1, false)
	if err != nil {
		return err
	}
	if err := checkModel(objs, m); err != nil {
		return err
	}
	rev, err := buildModel(objs, s.SlicesFirst == 1, true)
	if err != nil {
		return err
	}
	if d := sameModel(m.state, rev.state); d != "" {
		return errors.New("the model depends on the order EndpointSlices arrive in: " + d)
	}
	return checkRender(ctx, m.state, rt, exec)
}

// checkRender renders both families and checks each.
func checkRender(ctx context.Context, st *proxier.State, rt *restoreTester, exec bool) error {
	for _, fam := range []proxier.IPFamily{proxier.IPv4, proxier.IPv6} {
		r, err := renderFamily(ctx, st, fam)
		if err != nil {
			return err
		}
		if err := checkTrace(st, fam, r); err != nil {
			return err
		}
		if exec && rt != nil {
			if err := rt.check(ctx, r.rs); err != nil {
				return err
			}
		}
	}
	return nil
}

// FuzzDecode feeds raw bytes through the YAML decoder kproxy render and trace use,
// then through the model and the renderer: whatever the file holds, nothing panics,
// every rejection is an InvalidObjectError, and what is accepted renders to rules
// that restore and behave as the model says.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, _ := offline.Decode("fuzz.yaml", bytes.NewReader(data))
		node := thisNode
		if len(objs.Nodes) > 0 && objs.Nodes[0].Name != "" {
			node = objs.Nodes[0].Name
		}
		b := proxier.NewBuilder(proxier.BuilderOptions{NodeName: node, NodePortRange: nodePortRange})
		for _, n := range objs.Nodes {
			if err := b.SetNode(n); err != nil && !isInvalidObject(err, "Node") {
				t.Fatalf("Node %s: %v", n.Name, err)
			}
		}
		for _, svc := range objs.Services {
			if err := b.UpsertService(svc); err != nil && !isInvalidObject(err, "Service") {
				t.Fatalf("Service %s: %v", svc.Name, err)
			}
		}
		for _, s := range objs.EndpointSlices {
			if err := b.UpsertEndpointSlice(s); err != nil && !isInvalidObject(err, "EndpointSlice") {
				t.Fatalf("EndpointSlice %s: %v", s.Name, err)
			}
		}
		st, _ := b.Snapshot()
		for _, sp := range st.ServicePorts() {
			if err := checkServicePortOn(sp, node); err != nil {
				t.Fatal(err)
			}
		}
		if err := checkRender(context.Background(), st, nil, false); err != nil {
			t.Fatal(err)
		}
	})
}
