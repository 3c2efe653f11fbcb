//go:build unix

package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xmppxtls/xtls/examples/internal/cli"
)

// tmux is a real terminal emulator that the test reads: a tmux server of
// its own, whose one pane's terminal the program under test uses.
type tmux struct {
	t    *testing.T
	sock string
	tty  *os.File
}

// startTmux starts a tmux server with a 100×30 pane that holds its
// terminal open and reads nothing, and opens that terminal.
func startTmux(t *testing.T) *tmux {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("this test runs xtls-chat on a real terminal and needs tmux (scripts/install-deps.sh installs it):", err)
	}
	dir := t.TempDir()
	tm := &tmux{t: t, sock: filepath.Join(dir, "tmux.sock")}
	name := filepath.Join(dir, "tty")
	tm.run("-f", "/dev/null", "new-session", "-d", "-x", "100", "-y", "30", "tty > "+name+"; exec sleep 3600")
	t.Cleanup(func() { exec.Command("tmux", "-S", tm.sock, "kill-server").Run() })
	var path []byte
	tm.poll("the pane's terminal name", func() bool {
		path, _ = os.ReadFile(name)
		return bytes.HasSuffix(path, []byte("\n"))
	})
	f, err := os.OpenFile(strings.TrimSpace(string(path)), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	tm.tty = f
	t.Cleanup(func() { f.Close() })
	return tm
}

// run runs a tmux command.
func (tm *tmux) run(args ...string) string {
	tm.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", tm.sock}, args...)...).CombinedOutput()
	if err != nil {
		tm.t.Fatalf("tmux %q: %v\n%s", args, err, out)
	}
	return string(out)
}

// screen returns what the pane shows, line by line, without trailing
// blank lines.
func (tm *tmux) screen() []string {
	lines := strings.Split(strings.TrimRight(tm.run("capture-pane", "-p"), "\n "), "\n")
	for i := range lines {
		lines[i] = strings.TrimRight(lines[i], " ")
	}
	return lines
}

// poll waits, with a deadline (tmux is another process), for ok.
func (tm *tmux) poll(what string, ok func() bool) {
	tm.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			tm.t.Fatalf("tmux: no %s; the screen:\n%s", what, strings.Join(tm.screen(), "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFor waits until a line of the screen contains s.
func (tm *tmux) waitFor(s string) {
	tm.t.Helper()
	tm.poll(strings.TrimSpace(s), func() bool { return strings.Contains(strings.Join(tm.screen(), "\n"), s) })
}

// typeKeys types text, then the keys (Enter, say).
func (tm *tmux) typeKeys(text string, keys ...string) {
	tm.t.Helper()
	if text != "" {
		tm.run("send-keys", "-l", text)
	}
	if len(keys) > 0 {
		tm.run(append([]string{"send-keys"}, keys...)...)
	}
}

// On a real terminal, a line half typed stays intact, below, while three
// messages arrive above it; Enter then sends it whole.
func TestHalfTypedLineOnTerminal(t *testing.T) {
	w := newWorld(t)
	tm := startTmux(t)
	var stderr bytes.Buffer
	done := make(chan int, 1)
	ctx, cancel := context.WithCancel(w.ctx)
	defer cancel()
	go func() {
		done <- runWith(ctx, cli.NetworkConnect(w.network), []string{"-dir", w.dir, "-jid", aliceAddr, "listen"}, tm.tty, tm.tty, &stderr)
	}()
	tm.waitFor("waiting for a chat")
	bob := w.dial()
	tm.waitFor("type yes")
	tm.typeKeys("yes", "Enter")
	w.expect(bob, "type yes")
	bob.Type("yes")
	tm.waitFor("chat with bob@example.org/chat started")

	const half = "a half-typed lïne, not sent yet"
	tm.typeKeys(half)
	tm.waitFor("> " + half)
	for _, m := range []string{"one", "two", "three"} {
		bob.Type("message " + m)
	}
	tm.waitFor("bob@example.org> message three")
	screen := tm.screen()
	if last := screen[len(screen)-1]; last != "> "+half {
		t.Errorf("the last line is %q, want the prompt and the half-typed line intact; the screen:\n%s", last, strings.Join(screen, "\n"))
	}
	for _, m := range []string{"one", "two", "three"} {
		found := false
		for _, line := range screen {
			found = found || line == "bob@example.org> message "+m
		}
		if !found {
			t.Errorf("message %s is not on a line of its own; the screen:\n%s", m, strings.Join(screen, "\n"))
		}
	}
	if n := strings.Count(strings.Join(screen, "\n"), half); n != 1 {
		t.Errorf("the half-typed line shows %d times; the screen:\n%s", n, strings.Join(screen, "\n"))
	}
	tm.typeKeys("", "Enter")
	w.expect(bob, "alice@example.net> "+half)
	tm.typeKeys("/quit", "Enter")
	w.expect(bob, "alice@example.net left the chat")
	if code := <-done; code != exitOK {
		t.Errorf("alice: exit %d\n%s", code, stderr.String())
	}
	w.exit(bob, exitOK)
}
