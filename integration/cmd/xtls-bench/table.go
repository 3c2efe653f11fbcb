package main

import (
	"fmt"
	"io"
	"math"
	"text/tabwriter"
)

// row is one line of the table for one server: what was measured, its
// unit, and the value. Each measurement's result type lists its rows
// (a rows method) in the file that measures it.
type row struct {
	label, unit string
	v           float64
	// atLeast marks a lower bound: some samples were lost and counted as
	// the timeout.
	atLeast bool
}

// column is one server's rows.
type column struct {
	name string
	rows []row
}

// printTable prints the columns side by side under header. Rows are matched
// by label and unit and kept in the order they first appear; a row a column
// lacks, or whose value is NaN, prints as "–".
func printTable(w io.Writer, header string, cols []column) {
	fmt.Fprintf(w, "%s\n\n", header)
	type key struct{ label, unit string }
	var order []key
	seen := map[key]bool{}
	vals := make([]map[key]row, len(cols))
	for i, c := range cols {
		vals[i] = map[key]row{}
		for _, r := range c.rows {
			k := key{r.label, r.unit}
			vals[i][k] = r
			if !seen[k] {
				seen[k] = true
				order = append(order, k)
			}
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "what\tunit\t")
	for _, c := range cols {
		fmt.Fprintf(tw, "%s\t", c.name)
	}
	fmt.Fprintln(tw)
	for _, k := range order {
		fmt.Fprintf(tw, "%s\t%s\t", k.label, k.unit)
		for i := range cols {
			fmt.Fprintf(tw, "%s\t", formatValue(vals[i][k], vals[i][k] != row{}))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

// formatValue prints large values without decimals and small ones with two.
func formatValue(r row, ok bool) string {
	if !ok || math.IsNaN(r.v) {
		return "–"
	}
	prefix := ""
	if r.atLeast {
		prefix = "≥"
	}
	if math.Abs(r.v) >= 100 {
		return fmt.Sprintf("%s%.0f", prefix, r.v)
	}
	return fmt.Sprintf("%s%.2f", prefix, r.v)
}
