package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/thingd/thingd/sim/api"
	"github.com/thingd/thingd/sim/simtest"
)

func TestShadowCommands(t *testing.T) {
	s := simtest.Start(t)
	dir := s.Dir()
	s.NewDevice(t, "dev1")

	r := runCLI(t, "shadow", "update", "--dir", dir, "--thing", "dev1", "--desired", `{"config":{"logLevel":"debug"}}`, "--reported", `{"config":{"logLevel":"info"}}`).ok(t)
	var accepted api.ShadowDocument
	if err := json.Unmarshal([]byte(r.stdout), &accepted); err != nil || accepted.Version != 1 || accepted.State.Desired == nil || accepted.State.Reported == nil {
		t.Errorf("shadow update printed %q (err %v), want the accepted document at version 1", r.stdout, err)
	}
	r = runCLI(t, "shadow", "get", "--dir", dir, "--thing", "dev1").ok(t)
	var doc api.ShadowDocument
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || doc.State.Delta["config"] == nil {
		t.Errorf("shadow get printed %q (err %v), want the document with the delta", r.stdout, err)
	}
	runCLI(t, "shadow", "update", "--dir", dir, "--thing", "dev1", "--name", "dev1-child", "--reported", `{"temp":21.5}`).ok(t)
	if got := s.WaitReported(t, "dev1", "dev1-child", 0, func(r map[string]any) bool { return r["temp"] == 21.5 }); got == nil {
		t.Error("the named shadow lacks the reported temp")
	}
	r = runCLI(t, "shadow", "list", "--dir", dir, "--thing", "dev1").ok(t)
	if !strings.Contains(r.stdout, `"dev1-child"`) {
		t.Errorf("shadow list printed %q", r.stdout)
	}
	r = runCLI(t, "shadow", "delete", "--dir", dir, "--thing", "dev1", "--name", "dev1-child").ok(t)
	if !strings.Contains(r.stdout, `"version": 1`) {
		t.Errorf("shadow delete printed %q", r.stdout)
	}
	runCLI(t, "shadow", "update", "--dir", dir, "--thing", "dev1", "--desired", "null").ok(t)
	if doc, version := s.GetShadow(t, "dev1", ""); version != 2 || doc.State.Desired != nil {
		t.Errorf("after --desired null: version %d, desired %v", version, doc.State.Desired)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"shadow", "get", "--dir", dir}, 2, "needs --thing"},
		{[]string{"shadow", "update", "--dir", dir, "--thing", "dev1"}, 2, "--desired or --reported"},
		{[]string{"shadow", "update", "--dir", dir, "--thing", "dev1", "--desired", "{nope"}, 2, "--desired is not JSON"},
		{[]string{"shadow", "update", "--dir", dir, "--thing", "dev1", "--reported", `"on"`}, 1, "Reported node must be an object"},
		{[]string{"shadow", "get", "--dir", dir, "--thing", "dev1", "--name", "dev1-child"}, 1, "No shadow exists with name: 'dev1-child'"},
		{[]string{"shadow", "get", "--dir", dir, "--thing", "dev1", "--name", "bad name"}, 1, "InvalidRequestException"},
		{[]string{"shadow", "delete", "--dir", dir, "--thing", "dev1", "extra"}, 2, "unexpected argument"},
		{[]string{"shadow", "frob", "--dir", dir}, 2, "unknown command"},
	} {
		r := runCLI(t, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("thingsim %q: exit %d, stderr %q; want exit %d mentioning %q", tc.args, r.code, r.stderr, tc.code, tc.want)
		}
	}
}
