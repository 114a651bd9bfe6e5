package consul

import (
	"errors"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/gateway/config"
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

func TestChangesAgainstFleet(t *testing.T) {
	leaf := func(path, value, source string) config.Leaf {
		return config.Leaf{Path: path, Value: value, Source: source}
	}
	// what the update composes (ctl's -config + the new content): lottery's fallback from
	// the new key, info's timeout from the file
	after := &config.Config{Sources: []config.Leaf{
		leaf("admin.listen", "127.0.0.1:9901", "ctl.yaml:3"),
		leaf("routes.info.timeout", "300ms", "ctl.yaml:8"),
		leaf("routes.lottery.fallback.status", "418", "consul:fg/routes/lottery/fallback/status"),
	}}
	served := func(id string, gen uint64, leaves ...config.Leaf) Member {
		return NewMember(InstanceStatus{ID: id}, "http://x", &GatewayView{Generation: gen, Sources: leaves}, nil)
	}
	inSync := []config.Leaf{
		leaf("admin.listen", "127.0.0.1:19901", "/etc/gw-a.yaml:3"), // per instance, never live: not compared
		leaf("routes.info.timeout", "300ms", "/etc/gw-a.yaml:8"),    // another path to the same file: not a change
		leaf("routes.lottery.fallback.status", "429", "consul:fg/routes/lottery/fallback/status"),
	}
	held := []config.Leaf{ // holds an older content: report's timeout from a key since removed
		leaf("routes.info.timeout", "300ms", "gw.yaml:8"),
		leaf("routes.lottery.fallback.status", "429", "consul:fg/routes/lottery/fallback/status"),
		leaf("routes.report.timeout", "50ms", "consul:fg/routes/report/timeout"),
	}
	otherFile := []config.Leaf{ // its file sets info's timeout differently
		leaf("routes.info.timeout", "250ms", "gw.yaml:8"),
		leaf("routes.lottery.fallback.status", "429", "consul:fg/routes/lottery/fallback/status"),
	}
	for _, tc := range []struct {
		desc    string
		members []Member
		want    []string // per served configuration: "ids: changes | file differs"
	}{
		{desc: "gateways serving the same configuration share one list; the unread one is left out",
			members: []Member{served("a", 4, inSync...), served("b", 9, inSync...), NewMember(InstanceStatus{ID: "c"}, "", nil, errors.New("refused"))},
			want:    []string{"a@4,b@9: routes.lottery.fallback.status 429->418 |"}},
		{desc: "a gateway holding older content gets the changes it will really make",
			members: []Member{served("a", 4, inSync...), served("b", 7, held...)},
			want: []string{"a@4: routes.lottery.fallback.status 429->418 |",
				"b@7: routes.lottery.fallback.status 429->418, routes.report.timeout 50ms-> |"}},
		{desc: "a file that differs from -config is said apart, not counted as a change",
			members: []Member{served("a", 4, otherFile...)},
			want:    []string{"a@4: routes.lottery.fallback.status 429->418 | routes.info.timeout 250ms->300ms"}},
		{desc: "no gateway read", members: []Member{NewMember(InstanceStatus{ID: "c"}, "", nil, errors.New("refused"))}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			var got []string
			for _, sc := range ChangesAgainstFleet(tc.members, after) {
				var ids, chs, files []string
				for i := range sc.IDs {
					ids = append(ids, sc.IDs[i]+"@"+sc.Generations[i])
				}
				for _, ch := range sc.Changes {
					chs = append(chs, ch.Path+" "+ch.Old+"->"+ch.New)
				}
				for _, ch := range sc.FileDiffers {
					files = append(files, ch.Path+" "+ch.Old+"->"+ch.New)
				}
				got = append(got, strings.TrimSpace(strings.Join(ids, ",")+": "+strings.Join(chs, ", ")+" | "+strings.Join(files, ", ")))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func TestFleetWarnings(t *testing.T) {
	view := &GatewayView{Generation: 3, Watcher: Status{Fingerprint: "cur"}}
	m := func(id string, w Status, read bool) Member {
		if !read {
			return NewMember(InstanceStatus{ID: id, Meta: map[string]string{MetaFingerprint: w.Fingerprint, MetaGeneration: "2"}}, "", nil, errors.New("connection refused"))
		}
		v := *view
		v.Watcher = w
		return NewMember(InstanceStatus{ID: id}, "http://x", &v, nil)
	}
	for _, tc := range []struct {
		desc    string
		members []Member
		served  []ServedChanges
		want    []string // each in order; nil: no warning
	}{
		{desc: "all serve the content", members: []Member{m("a", Status{Fingerprint: "cur"}, true)}, served: []ServedChanges{{IDs: []string{"a"}}}},
		{desc: "a hold is named with the gateway's generation",
			members: []Member{m("a", Status{Fingerprint: "old", Held: "the read is empty"}, true)},
			want:    []string{"a (generation 3) holds an update and serves an older configuration than Consul's content: the read is empty"}},
		{desc: "other content, stale",
			members: []Member{m("a", Status{Fingerprint: "old", Stale: "consul unreachable"}, true)},
			want:    []string{"a (generation 3) serves other content than Consul's (fingerprint old, not cur)", "a is stale: consul unreachable"}},
		{desc: "an admin API that was not read (its meta speaks for it)",
			members: []Member{m("a", Status{Fingerprint: "cur"}, false)},
			want:    []string{"a: its admin API was not read (connection refused): no diff against what it serves"}},
		{desc: "two configurations, one with another file",
			members: []Member{m("a", Status{Fingerprint: "cur"}, true), m("b", Status{Fingerprint: "cur"}, true)},
			served:  []ServedChanges{{IDs: []string{"a"}}, {IDs: []string{"b"}, FileDiffers: []config.Change{{Path: "routes.info.timeout", Old: "250ms", New: "300ms", Source: "file"}}}},
			want: []string{"the gateways serve 2 different configurations",
				"b: its file differs from -config at 1 value(s) (e.g. routes.info.timeout: 250ms there, 300ms in -config)"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got := FleetWarnings(tc.members, "cur", tc.served)
			if len(got) != len(tc.want) {
				t.Fatalf("warnings %q, want %q", got, tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("warning %d: %q, want it to start %q", i, got[i], w)
				}
			}
		})
	}
}
