package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
)

// Term drives a program the way a person at a terminal does, for tests and
// demos: it types lines into the program's standard input and reads what
// the program writes to its standard output and standard error, line by
// line. As on a terminal, the two go to one place, in the order they were
// written. Nothing waits for time: Expect returns as soon as the line it
// waits for has been written.
type Term struct {
	name string
	echo io.Writer

	inR      *io.PipeReader
	inW      *io.PipeWriter
	typed    chan *string // nil: end of input
	quit     chan struct{}
	exited   chan struct{}
	quitOnce sync.Once
	code     int
	wg       sync.WaitGroup // the writer and the reader

	mu    sync.Mutex
	lines []string
	next  int           // the first line Expect has not passed yet
	more  chan struct{} // a line came (capacity 1)
	eof   bool          // the output ended
}

// NewTerm returns a terminal named name. If echo is not nil, every line the
// program writes is copied to it as "name | line", and every line typed as
// "name < line"; echo must be safe for concurrent use (see SyncWriter).
func NewTerm(name string, echo io.Writer) *Term {
	t := &Term{name: name, echo: echo, typed: make(chan *string, 64), quit: make(chan struct{}),
		exited: make(chan struct{}), more: make(chan struct{}, 1)}
	t.inR, t.inW = io.Pipe()
	return t
}

// Start runs prog on the terminal in a goroutine. Call it once.
func (t *Term) Start(prog func(stdin io.Reader, stdout, stderr io.Writer) int) {
	// Writes to a pipe are delivered one whole call at a time, in order,
	// whichever stream they are made to.
	outR, outW := io.Pipe()
	t.wg.Add(2)
	go t.read(outR)
	go t.write()
	go func() {
		t.code = prog(t.inR, outW, outW)
		outW.Close()
		// A line typed but never read would block the writer.
		t.inR.CloseWithError(io.ErrClosedPipe)
		close(t.exited)
	}()
}

// read collects the lines of the output.
func (t *Term) read(r *io.PipeReader) {
	defer t.wg.Done()
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if t.echo != nil {
			fmt.Fprintf(t.echo, "%-5s | %s\n", t.name, line)
		}
		t.mu.Lock()
		t.lines = append(t.lines, line)
		t.mu.Unlock()
		t.signal()
	}
	r.CloseWithError(io.ErrClosedPipe) // unblock the program if a line was too long
	t.mu.Lock()
	t.eof = true
	t.mu.Unlock()
	t.signal()
}

// signal wakes Expect.
func (t *Term) signal() {
	select {
	case t.more <- struct{}{}:
	default:
	}
}

// write types the queued lines, in order.
func (t *Term) write() {
	defer t.wg.Done()
	for {
		select {
		case line := <-t.typed:
			if line == nil {
				t.inW.Close()
				return
			}
			if _, err := io.WriteString(t.inW, *line+"\n"); err != nil {
				return
			}
		case <-t.quit:
			return
		}
	}
}

// Type types line and Enter. It does not wait for the program to read it.
func (t *Term) Type(line string) {
	if t.echo != nil {
		fmt.Fprintf(t.echo, "%-5s < %s\n", t.name, line)
	}
	select {
	case t.typed <- &line:
	case <-t.quit:
	}
}

// CloseInput ends the program's standard input (Ctrl-D) after the lines
// typed so far.
func (t *Term) CloseInput() {
	select {
	case t.typed <- nil:
	case <-t.quit:
	}
}

// Expect waits for a line containing substr, written after the line the
// previous Expect returned, and returns it. It fails if the program's
// output ends first, or ctx does; the error then shows the output.
func (t *Term) Expect(ctx context.Context, substr string) (string, error) {
	for {
		t.mu.Lock()
		for ; t.next < len(t.lines); t.next++ {
			if line := t.lines[t.next]; strings.Contains(line, substr) {
				t.next++
				t.mu.Unlock()
				return line, nil
			}
		}
		ended := t.eof
		t.mu.Unlock()
		if ended {
			return "", fmt.Errorf("%s: output ended without %q:\n%s", t.name, substr, t.Output())
		}
		select {
		case <-t.more:
		case <-ctx.Done():
			return "", fmt.Errorf("%s: %w waiting for %q; output so far:\n%s", t.name, ctx.Err(), substr, t.Output())
		}
	}
}

// Lines returns every line the program has written so far.
func (t *Term) Lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.lines...)
}

// Name returns the name the terminal was made with.
func (t *Term) Name() string { return t.name }

// Output returns every line the program has written so far, as one text.
func (t *Term) Output() string {
	lines := t.Lines()
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

// Exited is closed when the program has returned.
func (t *Term) Exited() <-chan struct{} { return t.exited }

// Wait waits, after Start, for the program to return and for the terminal's goroutines
// to end, and returns the program's exit status. It may be called more
// than once.
func (t *Term) Wait() int {
	<-t.exited
	t.quitOnce.Do(func() { close(t.quit) })
	t.wg.Wait()
	return t.code
}

// SyncWriter returns a writer that passes each Write to w, one at a time.
func SyncWriter(w io.Writer) io.Writer { return &syncWriter{w: w} }

// syncWriter serializes writes.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// Write writes p to the underlying writer, alone.
func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
