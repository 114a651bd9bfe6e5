//go:build !race

package packfile

const raceEnabled = false
