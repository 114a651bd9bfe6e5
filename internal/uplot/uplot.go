// Package uplot embeds the uPlot chart library (MIT, see uPlot.LICENSE) so that the HTML
// drill reports and the admin dashboard inline it and open without network access.
package uplot

import _ "embed"

var (
	//go:embed uPlot.iife.min.js
	JS string
	//go:embed uPlot.min.css
	CSS string
	//go:embed uPlot.LICENSE
	License string
)
