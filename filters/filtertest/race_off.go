//go:build !race

package filtertest

const raceEnabled = false
