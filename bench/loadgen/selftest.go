package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/floodgate/floodgate/bench/profile"
)

// SelfTestOptions tune SelfTest; zero values mean defaults.
type SelfTestOptions struct {
	// StartRate is the first rate tried (default 2000/s).
	StartRate float64
	// MaxRate stops the search (default 1,000,000/s).
	MaxRate float64
	// Step is how long each rate is held (default 2 s).
	Step time.Duration
	// Conns is the connection budget (default DefaultConns).
	Conns int
	// Progress, if set, is called after each step.
	Progress func(SelfTestStep)
}

// SelfTestStep is one rate tried.
type SelfTestStep struct {
	Rate     float64       // offered
	Achieved float64       // answers per second
	Late     float64       // share of late sends
	LagP99   time.Duration // generator lag
	P99      time.Duration // latency from the intended time
	Failed   int64         // answers that were not 200
	OK       bool
}

// SelfTestResult is the generator's measured ceiling on this machine.
type SelfTestResult struct {
	Steps   []SelfTestStep
	MaxRate float64 // highest rate held with < 1% late sends and no failures
	CPUs    int
}

// SelfTest measures the highest rate this generator can drive, against a trivial
// fasthttp server in the same process on 127.0.0.1:0 (which competes for the same CPUs,
// so the figure is a floor). It doubles the rate until a step fails, then bisects twice.
func SelfTest(ctx context.Context, o SelfTestOptions) (*SelfTestResult, error) {
	if o.StartRate <= 0 {
		o.StartRate = 2000
	}
	if o.MaxRate <= 0 {
		o.MaxRate = 1_000_000
	}
	if o.Step <= 0 {
		o.Step = 2 * time.Second
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &fasthttp.Server{
		Handler: func(c *fasthttp.RequestCtx) {
			c.SetStatusCode(fasthttp.StatusOK)
			c.SetBodyString("ok")
		},
		NoDefaultServerHeader: true,
		ReadTimeout:           10 * time.Second,
		IdleTimeout:           30 * time.Second,
		CloseOnShutdown:       true,
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	defer func() {
		_ = srv.Shutdown()
		<-serveErr
	}()
	target := ln.Addr().String()

	res := &SelfTestResult{CPUs: runtime.GOMAXPROCS(0)}
	try := func(rate float64) (bool, error) {
		p := &profile.Profile{Name: "self-test", Target: target,
			Routes: []profile.Route{{Name: "selftest", Path: "/"}},
			Stages: []profile.Stage{{Hold: &profile.Hold{Rate: profile.Abs(rate), Duration: o.Step}}}}
		r, err := Run(ctx, p, Options{Conns: o.Conns, Timeout: time.Second})
		if err != nil {
			return false, err
		}
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		st := SelfTestStep{Rate: rate, Late: r.LateFraction(),
			LagP99: time.Duration(r.Lag.ValueAtQuantile(99)) * time.Microsecond,
			P99:    time.Duration(r.Latency(ClassAdmitted).ValueAtQuantile(99)) * time.Microsecond,
			Failed: r.Completed - r.ClassCount("", ClassAdmitted)}
		if r.Elapsed > 0 {
			st.Achieved = float64(r.Completed) / r.ScheduleLength.Seconds()
		}
		st.OK = !r.GeneratorLimited() && st.Failed == 0 && r.Unsent == 0
		res.Steps = append(res.Steps, st)
		if o.Progress != nil {
			o.Progress(st)
		}
		if st.OK && rate > res.MaxRate {
			res.MaxRate = rate
		}
		return st.OK, nil
	}
	good, bad := 0.0, 0.0
	for rate := o.StartRate; rate <= o.MaxRate; rate *= 2 {
		ok, err := try(rate)
		if err != nil {
			return res, err
		}
		if !ok {
			bad = rate
			break
		}
		good = rate
	}
	for i := 0; i < 2 && bad > 0 && good > 0; i++ {
		mid := (good + bad) / 2
		ok, err := try(mid)
		if err != nil {
			return res, err
		}
		if ok {
			good = mid
		} else {
			bad = mid
		}
	}
	if res.MaxRate == 0 {
		return res, errors.New(fmt.Sprint("the generator could not hold even ", o.StartRate, "/s on this machine"))
	}
	return res, nil
}
