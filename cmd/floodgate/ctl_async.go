package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/floodgate/floodgate/gateway/config"
	"github.com/floodgate/floodgate/gateway/consul"
	"github.com/floodgate/floodgate/internal/queue"
	"github.com/floodgate/floodgate/internal/texttable"
)

// asyncRow is one async route's delivery state, as `ctl async` prints it.
type asyncRow struct {
	Route         string  `json:"route"`
	Pending       uint64  `json:"pending"`
	AckPending    int     `json:"ack_pending"`
	OldestSeconds float64 `json:"oldest_age_seconds"`
	Paused        bool    `json:"paused"`
	Rate          float64 `json:"rate"`
	Error         string  `json:"error,omitempty"`
}

// async prints the backlog of every async route and its delivery switches.
func (c *ctlCmd) async(ctl *consul.Ctl) error {
	source := "file + consul " + ctl.Prefix
	var cfg *config.Config
	if st, err := ctl.Read(); err == nil {
		ev, err := ctl.Evaluate(st.KVs, "")
		if err != nil {
			return failed(fmt.Errorf("the file with consul's values does not validate (the gateways keep an older configuration): %w", err))
		}
		cfg = ev.Config
	} else {
		source = "file only (consul unreachable: " + err.Error() + ")"
		if cfg, err = config.Load(ctl.Doc); err != nil {
			return failed(err)
		}
	}
	var routes []string
	for name, r := range cfg.Routes {
		if r.Async != nil {
			routes = append(routes, name)
		}
	}
	sort.Strings(routes)
	if len(routes) == 0 {
		return failed(fmt.Errorf("%s has no async route", c.cfgPath))
	}
	client, err := queue.Connect(queue.Options{URLs: cfg.Queue.URL, Name: "floodgate-ctl", Stream: streamConfig(cfg)})
	if err != nil {
		return failed(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	for !client.Connected() {
		if ctx.Err() != nil {
			return failed(fmt.Errorf("queue %s: not reachable within %s", cfg.Queue.URL, c.timeout))
		}
		time.Sleep(20 * time.Millisecond)
	}
	var rows []asyncRow
	for _, name := range routes {
		d := cfg.Routes[name].Async.Deliver
		row := asyncRow{Route: name, Paused: d.Paused, Rate: d.Rate}
		b, err := client.RouteBacklog(ctx, name)
		if err != nil {
			row.Error = err.Error()
		} else {
			row.Pending, row.AckPending, row.OldestSeconds = b.Pending, b.AckPending, b.OldestAge.Seconds()
		}
		rows = append(rows, row)
	}
	if c.jsonOut {
		enc := json.NewEncoder(c.out)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"queue": cfg.Queue.URL, "stream": cfg.Queue.Stream, "switches": source, "routes": rows})
	}
	fmt.Fprintf(c.out, "queue %s, stream %s; switches from %s\n", cfg.Queue.URL, cfg.Queue.Stream, source)
	tab := &texttable.Table{Left: 1}
	tab.Add("route", "pending", "ack pending", "oldest", "paused", "rate/s", "")
	for _, r := range rows {
		oldest := "-"
		if r.OldestSeconds > 0 {
			oldest = (time.Duration(r.OldestSeconds * float64(time.Second))).Round(100 * time.Millisecond).String()
		}
		tab.Add(r.Route, strconv.FormatUint(r.Pending, 10), strconv.Itoa(r.AckPending), oldest, strconv.FormatBool(r.Paused), strconv.FormatFloat(r.Rate, 'f', -1, 64), r.Error)
	}
	tab.Write(c.out)
	return nil
}
