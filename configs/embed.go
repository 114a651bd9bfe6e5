// Package configs embeds the demo configuration, so that `floodgate gateway` with no
// -config serves the demo (what `make run` starts).
package configs

import _ "embed"

// Demo is configs/demo.yaml.
//
//go:embed demo.yaml
var Demo []byte
