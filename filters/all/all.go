// Package all links every built-in filter into the binary: importing it runs each
// filter's init(), which registers it. A new filter adds its import here, its name to
// filters/order.go and a README.md to its folder; TestOnePluginList checks all three
// against each other, both ways.
package all

import (
	_ "github.com/floodgate/floodgate/filters/acl"
	_ "github.com/floodgate/floodgate/filters/number_pack"
	_ "github.com/floodgate/floodgate/filters/promo_throttle"
	_ "github.com/floodgate/floodgate/filters/sample"
	_ "github.com/floodgate/floodgate/filters/token_bucket"
)
