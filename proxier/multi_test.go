package proxier

import (
	"context"
	"errors"
	"testing"
)

func TestMultiSyncsEveryProxierAndJoinsErrors(t *testing.T) {
	var calls []string
	boom := errors.New("boom")
	mk := func(name string, err error) Proxier {
		return ProxierFunc(func(context.Context, *State, ChangeSet) error {
			calls = append(calls, name)
			return err
		})
	}
	m := Multi(mk("v4", boom), mk("v6", nil))
	err := m.Sync(context.Background(), NewState(Node{Name: "n"}), FullSync())
	if !errors.Is(err, boom) {
		t.Errorf("Sync error = %v, want it to wrap the IPv4 failure", err)
	}
	if len(calls) != 2 {
		t.Errorf("calls = %v, want both proxiers synced although the first failed", calls)
	}
	if err := m.Cleanup(context.Background()); err != nil {
		t.Errorf("Cleanup: %v", err)
	}
	if single := mk("only", nil); Multi(single) == nil {
		t.Error("Multi of one proxier must return it")
	}
}
