package consul

import (
	"errors"
	"strings"
	"testing"
)

func TestFleetStatus(t *testing.T) {
	content := keys("lottery/enabled=false", "active_plan=")
	snap, err := Convert("floodgate/", content)
	if err != nil {
		t.Fatal(err)
	}
	fp := snap.Fingerprint
	// member is a gateway whose admin API was not read: its catalog meta speaks for it
	member := func(id, health string, meta ...string) Member {
		m := map[string]string{}
		for _, kv := range meta {
			k, v, _ := strings.Cut(kv, "=")
			m[k] = v
		}
		return NewMember(InstanceStatus{ID: id, Health: health, Meta: m}, "", nil, errors.New("admin address unknown"))
	}
	// viewed is a gateway whose admin API was read: its live view wins over its meta
	viewed := func(id string, gen uint64, w Status, meta ...string) Member {
		m := member(id, "passing", meta...)
		v := &GatewayView{Generation: gen, Watcher: w}
		return NewMember(m.InstanceStatus, "http://127.0.0.1:9901", v, nil)
	}
	for _, tc := range []struct {
		desc    string
		kvs     []KV
		members []Member
		inSync  bool
		issues  []string // each must be in the issues, in this order
	}{
		{desc: "every gateway serves the content", kvs: content,
			members: []Member{member("a", "passing", "fingerprint="+fp), viewed("b", 7, Status{Fingerprint: fp})},
			inSync:  true},
		{desc: "no gateway registered", kvs: content,
			issues: []string{`no gateway is registered under service "floodgate"`}},
		{desc: "one gateway behind the content", kvs: content,
			members: []Member{member("a", "passing", "fingerprint="+fp), member("b", "passing", "fingerprint=0123")},
			issues:  []string{"b serves fingerprint 0123, not the current content's " + fp}},
		{desc: "a gateway that has never read consul", kvs: content,
			members: []Member{member("a", "passing")},
			issues:  []string{"a serves fingerprint -, not the current content's"}},
		{desc: "a hold is said instead of the fingerprint", kvs: content,
			members: []Member{member("a", "passing", "fingerprint=0123", "held=the read is empty")},
			issues:  []string{"a holds an update: the read is empty"}},
		{desc: "stale and unhealthy are both said", kvs: content,
			members: []Member{member("a", "critical", "fingerprint="+fp, "stale=consul unreachable")},
			issues:  []string{"a is stale: consul unreachable", "a health is critical"}},
		{desc: "the admin view wins over a meta that lags (a file reload not yet published)", kvs: content,
			members: []Member{viewed("a", 9, Status{Fingerprint: fp}, "fingerprint=0123", "generation=3", "held=old hold")},
			inSync:  true},
		{desc: "the admin view's hold and staleness count even when the meta says none", kvs: content,
			members: []Member{viewed("a", 9, Status{Fingerprint: fp, Held: "most keys removed", Stale: "consul refused the token"}, "fingerprint="+fp)},
			issues:  []string{"a holds an update: most keys removed", "a is stale: consul refused the token"}},
		{desc: "content that does not convert", kvs: keys("nope/x=1"),
			members: []Member{member("a", "passing", "fingerprint="+fp)},
			issues:  []string{"the current content of floodgate/ does not convert"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s := NewFleetStatus("floodgate", "", tc.kvs, tc.members)
			if s.InSync != tc.inSync || s.InSync != (len(s.Issues) == 0) {
				t.Errorf("in sync %v with issues %q, want %v", s.InSync, s.Issues, tc.inSync)
			}
			if len(s.Issues) != len(tc.issues) {
				t.Fatalf("issues %q, want %d: %q", s.Issues, len(tc.issues), tc.issues)
			}
			for i, want := range tc.issues {
				if !strings.Contains(s.Issues[i], want) {
					t.Errorf("issue %d: %q, want %q", i, s.Issues[i], want)
				}
			}
			if s.Prefix != "floodgate/" || s.Instances == nil {
				t.Errorf("prefix %q, instances %v", s.Prefix, s.Instances)
			}
		})
	}
}

func TestNewMember(t *testing.T) {
	in := InstanceStatus{ID: "a", Meta: map[string]string{MetaGeneration: "3", MetaFingerprint: "old", MetaPlan: "p", MetaStale: "s", MetaHeld: "h"}}
	m := NewMember(in, "", nil, errors.New("connection refused"))
	if m.Generation != "3" || m.Fingerprint != "old" || m.ActivePlan != "p" || m.Stale != "s" || m.Held != "h" || m.ViewError != "connection refused" {
		t.Errorf("from meta: %+v", m)
	}
	m = NewMember(in, "http://x", &GatewayView{Generation: 12, Watcher: Status{Fingerprint: "new", ActivePlan: "q"}}, nil)
	if m.Generation != "12" || m.Fingerprint != "new" || m.ActivePlan != "q" || m.Stale != "" || m.Held != "" || m.ViewError != "" || m.AdminURL != "http://x" {
		t.Errorf("from the view: %+v", m)
	}
}
