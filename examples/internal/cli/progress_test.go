package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// On a pipe or a file the progress is plain lines, never a carriage
// return; the line says percent, amounts, rate and time left.
func TestProgressLine(t *testing.T) {
	var b bytes.Buffer
	p := startProgress(SyncWriter(&b), false, 0, "x: ", 200<<20, 20<<20)
	p.Stop()
	if got := p.Line(80<<20, 8*time.Second); got != " 50% 100.0 MiB of 200.0 MiB, 10.0 MiB/s, 10s left" {
		t.Errorf("line %q", got)
	}
	if strings.Contains(b.String(), "\r") {
		t.Errorf("carriage return in %q", b.String())
	}
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3 << 29: "1.5 GiB"} {
		if got := Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
}

// On a terminal the progress is a bar redrawn in place, within the width.
func TestProgressBar(t *testing.T) {
	p := startProgress(&bytes.Buffer{}, true, 80, "x: ", 100<<20, 0)
	p.Add(50 << 20)
	p.Stop()
	bar := p.bar(5e9)
	if !strings.HasPrefix(bar, "x: [") || !strings.Contains(bar, "#") || !strings.Contains(bar, ".") || !strings.Contains(bar, " 50% ") || len(bar) > 80 {
		t.Errorf("bar %q", bar)
	}
	// More than the total (a file sent again from its start): full, no
	// more.
	p.Add(80 << 20)
	if bar := p.bar(5e9); !strings.Contains(bar, "100% ") || strings.Contains(bar, "[#.") {
		t.Errorf("bar past the total %q", bar)
	}
}
