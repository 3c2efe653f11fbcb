package cli

import (
	"bufio"
	"io"
	"os"
	"strings"
	"sync"

	"golang.org/x/term"
)

// Console is where an interactive program reads the lines typed and shows
// what happens. On a terminal it is a line editor (golang.org/x/term):
// what arrives while a line is being typed is written above it, and the
// prompt and the half-typed line are drawn again below, intact; Ctrl-C
// and Ctrl-D on an empty line end the input. Elsewhere (pipes, tests) it
// reads lines and writes through.
type Console struct {
	// Lines are the lines typed, without their ends; closed at the end of
	// the input.
	Lines <-chan string
	// Out shows text; it is safe for concurrent use.
	Out io.Writer

	done    chan struct{}
	once    sync.Once
	restore func()
}

// OpenConsole opens the console on stdin and stdout, with prompt when
// they are a terminal. Close it to give the terminal back as it was.
func OpenConsole(stdin io.Reader, stdout io.Writer, prompt string) *Console {
	c := &Console{done: make(chan struct{}), restore: func() {}}
	in, ok1 := stdin.(*os.File)
	out, ok2 := stdout.(*os.File)
	if ok1 && ok2 && term.IsTerminal(int(in.Fd())) && term.IsTerminal(int(out.Fd())) {
		if state, err := term.MakeRaw(int(in.Fd())); err == nil {
			t := term.NewTerminal(struct {
				io.Reader
				io.Writer
			}{in, out}, prompt)
			if w, h, err := term.GetSize(int(out.Fd())); err == nil {
				t.SetSize(w, h)
			}
			ch := make(chan string)
			go func() {
				defer close(ch)
				for {
					line, err := t.ReadLine()
					if err != nil {
						return
					}
					select {
					case ch <- line:
					case <-c.done:
						return
					}
				}
			}()
			c.Lines, c.Out = ch, t
			c.restore = func() {
				io.WriteString(out, "\r\n")
				term.Restore(int(in.Fd()), state)
			}
			return c
		}
	}
	c.Lines, c.Out = ReadLines(stdin, c.done), SyncWriter(stdout)
	return c
}

// Close stops reading and gives the terminal back.
func (c *Console) Close() {
	c.once.Do(func() {
		close(c.done)
		c.restore()
	})
}

// ReadLines hands out the lines of r, without their line ends, until r
// ends (the channel is then closed) or done is closed.
func ReadLines(r io.Reader, done <-chan struct{}) <-chan string {
	ch := make(chan string)
	go func() {
		defer close(ch)
		br := bufio.NewReader(r)
		for {
			line, err := br.ReadString('\n')
			if err == nil || line != "" {
				select {
				case ch <- strings.TrimRight(line, "\r\n"):
				case <-done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return ch
}
