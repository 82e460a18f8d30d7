package iptables

import "testing"

func TestParseVersion(t *testing.T) {
	cases := []struct {
		in   string
		want Version
		feat Features
	}{
		{"iptables v1.8.9 (nf_tables)\n", Version{1, 8, 9, "nf_tables"}, Features{RandomFully: true, WaitSupported: true}},
		{"iptables v1.8.9 (legacy)", Version{1, 8, 9, "legacy"}, Features{RandomFully: true, WaitSupported: true}},
		{"ip6tables v1.6.2", Version{1, 6, 2, "legacy"}, Features{RandomFully: true, WaitSupported: true}},
		{"iptables v1.6.1", Version{1, 6, 1, "legacy"}, Features{}},
		{"iptables v1.4.21", Version{1, 4, 21, "legacy"}, Features{}},
	}
	for _, c := range cases {
		got, err := ParseVersion(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseVersion(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
		if f := featuresFor(got); f != c.feat {
			t.Errorf("featuresFor(%v) = %+v, want %+v", got, f, c.feat)
		}
	}
	if _, err := ParseVersion("no version here"); err == nil {
		t.Error("ParseVersion accepted garbage")
	}
}

func TestVersionAtLeast(t *testing.T) {
	v := Version{Major: 1, Minor: 6, Patch: 2}
	for _, c := range []struct {
		a, b, p int
		want    bool
	}{{1, 6, 2, true}, {1, 6, 3, false}, {1, 5, 9, true}, {1, 7, 0, false}, {0, 9, 9, true}, {2, 0, 0, false}} {
		if got := v.AtLeast(c.a, c.b, c.p); got != c.want {
			t.Errorf("%v.AtLeast(%d,%d,%d) = %v", v, c.a, c.b, c.p, got)
		}
	}
}
