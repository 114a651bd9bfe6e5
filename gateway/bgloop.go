package gateway

import "sync"

// bgLoop is the lifecycle of one of the gateway's background goroutines (the adaptive
// protection's window ticker, the health checks of ejected servers): it runs while the
// configuration in force needs it, and never after Close.
type bgLoop struct {
	mu     sync.Mutex
	stop   chan struct{} // nil: not running
	done   chan struct{}
	closed bool
}

// set starts run in its own goroutine when want and it is not running (and the loop is
// not closed), or stops it and waits for it when !want. run must close done when it
// returns, and return once stop is closed.
func (l *bgLoop) set(want bool, run func(stop <-chan struct{}, done chan<- struct{})) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case want && l.stop == nil && !l.closed:
		l.stop, l.done = make(chan struct{}), make(chan struct{})
		go run(l.stop, l.done)
	case !want && l.stop != nil:
		l.halt()
	}
}

// close stops the loop for good.
func (l *bgLoop) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.stop != nil {
		l.halt()
	}
}

// running reports whether the goroutine runs (for tests).
func (l *bgLoop) running() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stop != nil
}

// halt stops the goroutine and waits for it (l.mu held).
func (l *bgLoop) halt() {
	close(l.stop)
	<-l.done
	l.stop, l.done = nil, nil
}
