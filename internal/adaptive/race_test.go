//go:build race

package adaptive

// raceEnabled: the simulator's scenarios are pure computation and deterministic; under
// the race detector (about 100x slower here, 2048 atomic swaps a window) the step and
// steady-state tables run one or two of their cases. `go test` without -race runs them all in under a second.
const raceEnabled = true
