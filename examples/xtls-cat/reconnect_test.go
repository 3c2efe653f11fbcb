package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"

	"github.com/xmppxtls/xtls/examples/internal/cli"
)

// output records what is written to it, and lets a test wait until what
// was written so far meets a condition.
type output struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced at each write
}

func newOutput() *output { return &output{changed: make(chan struct{})} }

// Write records p.
func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(p)
	close(o.changed)
	o.changed = make(chan struct{})
	return len(p), nil
}

// Bytes returns a copy of what was written so far.
func (o *output) Bytes() []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	return bytes.Clone(o.buf.Bytes())
}

// wait waits until ok holds for what was written, or ctx ends.
func (o *output) wait(ctx context.Context, t *testing.T, what string, ok func([]byte) bool) {
	t.Helper()
	for {
		o.mu.Lock()
		done, ch := ok(o.buf.Bytes()), o.changed
		o.mu.Unlock()
		if done {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v; so far:\n%s", what, ctx.Err(), o.Bytes())
		}
	}
}

// waitFor waits until s has been written.
func (o *output) waitFor(ctx context.Context, t *testing.T, s string) {
	t.Helper()
	o.wait(ctx, t, "\""+s+"\"", func(b []byte) bool { return bytes.Contains(b, []byte(s)) })
}

// An instance whose session is cut mid-transfer logs in again by itself,
// says so ("connection lost, reconnecting…", then "resumed"), and the
// transfer goes on over the same tunnel: the listener receives every byte
// exactly once, and both exit 0. Either end may be the one cut.
func TestReconnectMidTransfer(t *testing.T) {
	for _, cut := range []string{"dialer", "listener"} {
		t.Run(cut, func(t *testing.T) {
			w := newWorld(t)
			setConnect(t, cli.NetworkConnect(w.network))
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			const aliceAddr, bobAddr = "alice@example.net/cat", "bob@example.org/cat"
			data := randomBytes(4<<20, 9)

			type ran struct {
				code   int
				stderr *output
			}
			runCat := func(args []string, stdin io.Reader, stdout io.Writer, stderr *output) <-chan ran {
				done := make(chan ran, 1)
				go func() {
					code := run(ctx, append([]string{"-dir", stateDir, "-tofu"}, args...), stdin, stdout, stderr)
					done <- ran{code, stderr}
				}()
				return done
			}
			bobOut, bobErr := newOutput(), newOutput()
			bob := runCat([]string{"-jid", bobAddr, "listen"}, bytes.NewReader(nil), bobOut, bobErr)
			bobErr.waitFor(ctx, t, "listening as")

			// Alice's stdin gives the first half, and the second only once
			// her session has been cut: the cut falls mid-transfer.
			stdin, feed := io.Pipe()
			second := make(chan struct{})
			go func() {
				feed.Write(data[:len(data)/2])
				select {
				case <-second:
				case <-ctx.Done():
				}
				feed.Write(data[len(data)/2:])
				feed.Close()
			}()
			aliceErr := newOutput()
			alice := runCat([]string{"-jid", aliceAddr, "dial", bobAddr}, stdin, io.Discard, aliceErr)

			bobOut.wait(ctx, t, "a quarter of the data", func(b []byte) bool { return len(b) >= len(data)/4 })
			victim, victimErr := aliceAddr, aliceErr
			if cut == "listener" {
				victim, victimErr = bobAddr, bobErr
			}
			if err := w.network.Disconnect(jid.MustParse(victim), stream.SystemShutdown); err != nil {
				t.Fatal(err)
			}
			close(second)
			victimErr.waitFor(ctx, t, cli.StatusLost)
			victimErr.waitFor(ctx, t, cli.StatusResumed)

			a, b := <-alice, <-bob
			if a.code != exitOK || b.code != exitOK {
				t.Fatalf("exit codes: dialer %d, listener %d\ndialer stderr:\n%s\nlistener stderr:\n%s", a.code, b.code, a.stderr.Bytes(), b.stderr.Bytes())
			}
			if got := bobOut.Bytes(); !bytes.Equal(got, data) {
				t.Errorf("bob received %d bytes, not the %d alice sent", len(got), len(data))
			}
			log := string(victimErr.Bytes())
			if lost, resumed := strings.Index(log, cli.StatusLost), strings.LastIndex(log, cli.StatusResumed); lost < 0 || resumed < lost {
				t.Errorf("the cut side does not say it lost the connection, then resumed:\n%s", log)
			}
		})
	}
}

// A listener whose session is lost before any tunnel came has nothing to
// continue: it says so and exits with the status of a broken connection,
// instead of waiting forever on a Handler that is gone.
func TestReconnectNothingToResume(t *testing.T) {
	w := newWorld(t)
	setConnect(t, cli.NetworkConnect(w.network))
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	stderr := newOutput()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"-dir", stateDir, "-jid", "bob@example.org/cat", "listen"}, bytes.NewReader(nil), io.Discard, stderr)
	}()
	stderr.waitFor(ctx, t, "listening as")
	if err := w.network.Disconnect(jid.MustParse("bob@example.org/cat"), stream.SystemShutdown); err != nil {
		t.Fatal(err)
	}
	if code := <-done; code != cli.ExitBroken {
		t.Errorf("exit %d, want %d:\n%s", code, cli.ExitBroken, stderr.Bytes())
	}
	if log := string(stderr.Bytes()); !strings.Contains(log, cli.StatusLost) || !strings.Contains(log, "could not be resumed") {
		t.Errorf("stderr does not say the connection was lost and could not be resumed:\n%s", log)
	}
}
