package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"
)

// Progress intervals: a bar on a terminal is redrawn often; a plain line
// (a log file, a pipe) is written now and then.
const (
	barInterval  = 250 * time.Millisecond
	lineInterval = 5 * time.Second
)

// Progress shows how far a transfer has come: on a terminal, a bar redrawn
// in place with the percentage, the rate and the time left; elsewhere a
// plain line now and then, never a carriage return. It counts what Add is
// given; Stop ends it.
type Progress struct {
	w      io.Writer
	tty    bool
	width  int
	prefix string
	total  int64 // bytes to move in all, those already there included
	base   int64 // bytes already there when it started
	n      atomic.Int64
	start  time.Time

	stop chan struct{}
	done chan struct{}
	once sync.Once
	drew bool // a bar is on the screen (written by the drawing goroutine, read after done)
}

// IsTerminal reports whether w is a terminal, and its width (80 if
// unknown).
func IsTerminal(w io.Writer) (bool, int) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return false, 0
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil || width < 40 {
		width = 80
	}
	return true, width
}

// StartProgress starts showing a transfer of total bytes, of which already
// are there, on w (a bar if w is a terminal), each line starting with
// prefix.
func StartProgress(w io.Writer, prefix string, total, already int64) *Progress {
	tty, width := IsTerminal(w)
	return startProgress(w, tty, width, prefix, total, already)
}

func startProgress(w io.Writer, tty bool, width int, prefix string, total, already int64) *Progress {
	p := &Progress{w: w, tty: tty, width: width, prefix: prefix, total: total, base: already, start: time.Now(),
		stop: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	return p
}

// Add counts n more bytes moved.
func (p *Progress) Add(n int64) { p.n.Add(n) }

// Moved returns the bytes moved since the start.
func (p *Progress) Moved() int64 { return p.n.Load() }

func (p *Progress) run() {
	defer close(p.done)
	every := lineInterval
	if p.tty {
		every = barInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			if p.tty {
				fmt.Fprintf(p.w, "\r%s\x1b[K", p.bar(now.Sub(p.start)))
				p.drew = true
			} else {
				fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.Line(p.n.Load(), now.Sub(p.start)))
			}
		}
	}
}

// Stop stops the display and clears the bar.
func (p *Progress) Stop() {
	p.once.Do(func() {
		close(p.stop)
		<-p.done
		if p.drew {
			io.WriteString(p.w, "\r\x1b[K")
		}
	})
}

// Line describes the progress after moving n bytes in elapsed: "42% 84.0
// MiB of 200.0 MiB, 9.8 MiB/s, 12s left".
func (p *Progress) Line(n int64, elapsed time.Duration) string {
	have := min(p.base+n, p.total) // a file sent again from its start counts twice
	s := fmt.Sprintf("%s of %s", Size(have), Size(p.total))
	if p.total > 0 {
		s = fmt.Sprintf("%3d%% %s", have*100/p.total, s)
	}
	if elapsed > 0 && n > 0 {
		rate := float64(n) / elapsed.Seconds()
		s += ", " + Size(int64(rate)) + "/s"
		if left := p.total - have; left > 0 {
			s += ", " + time.Duration(float64(left)/rate*float64(time.Second)).Round(time.Second).String() + " left"
		}
	}
	return s
}

// bar draws the bar and the line, within the terminal's width.
func (p *Progress) bar(elapsed time.Duration) string {
	line := p.Line(p.n.Load(), elapsed)
	room := p.width - len(p.prefix) - len(line) - 4
	if room < 10 || p.total <= 0 {
		return p.prefix + line
	}
	if room > 40 {
		room = 40
	}
	full := int(min(p.base+p.n.Load(), p.total) * int64(room) / p.total)
	return p.prefix + "[" + strings.Repeat("#", full) + strings.Repeat(".", room-full) + "] " + line
}

// Size writes a byte count for people, in binary units.
func Size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n)/unit, 0
	for f >= unit && i < 4 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTP"[i])
}
