//go:build race

package filtertest

// raceEnabled: the race detector allocates, so the kit's allocation check is skipped.
const raceEnabled = true
