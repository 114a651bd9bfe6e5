// Package texttable aligns columns for the terminal tables of floodgate bench and plan.
package texttable

import (
	"fmt"
	"io"
	"strings"
)

// Table aligns its columns: the first Left columns and the last one (free text) to the
// left, the others (numbers) to the right.
type Table struct {
	Left int
	// Indent starts every line.
	Indent string
	rows   [][]string
}

// Add appends a row.
func (t *Table) Add(cells ...string) { t.rows = append(t.rows, cells) }

// Write prints the rows, two spaces between columns, trailing spaces trimmed.
func (t *Table) Write(w io.Writer) {
	var width []int
	for _, r := range t.rows {
		for i, c := range r {
			for len(width) <= i {
				width = append(width, 0)
			}
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	for _, r := range t.rows {
		var b strings.Builder
		b.WriteString(t.Indent)
		for i, c := range r {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if i > 0 {
				b.WriteString("  ")
			}
			if i < t.Left || i == len(width)-1 {
				b.WriteString(c + pad)
			} else {
				b.WriteString(pad + c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}
