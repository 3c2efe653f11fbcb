package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/examples/internal/cli"
	"github.com/xmppxtls/xtls/xtls"
)

// A peer whose key changed is refused, and the message names the commands
// that fix it: each, run as printed, does what it says, and the next
// transfer goes through.
func TestKeyChangeNamesTheFix(t *testing.T) {
	for _, verb := range []string{"remove", "accept"} {
		t.Run(verb, func(t *testing.T) {
			w := newWorld(t)
			src := filepath.Join(w.dir, "src")
			writeRandom(t, filepath.Join(src, "x.bin"), 5000, 1)
			// Alice pinned a key bob no longer has.
			old, err := xtls.GenerateCertificate(jid.MustParse("bob@example.org"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(w.state, "alice@example.net"), 0o700); err != nil {
				t.Fatal(err)
			}
			pins, err := xtls.NewFilePinStore(filepath.Join(w.state, "alice@example.net", "pins.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := pins.AddPin(jid.MustParse("bob@example.org"), xtls.SPKIFingerprint(old.Leaf)); err != nil {
				t.Fatal(err)
			}

			bob := w.receive(w.ctx, filepath.Join(w.dir, "out"))
			a := w.wait(w.send(w.ctx, filepath.Join(src, "x.bin")), "sender", cli.ExitTrust)
			if !strings.Contains(a.stderr, "WARNING: THE KEY OF bob@example.org HAS CHANGED") {
				t.Fatalf("no warning:\n%s", a.stderr)
			}
			var fix string
			for _, line := range strings.Split(a.stderr, "\n") {
				if line = strings.TrimSpace(line); strings.HasPrefix(line, "xtls-pins ") && strings.Contains(line, " "+verb+" ") {
					fix = line
				}
			}
			if fix == "" {
				t.Fatalf("no xtls-pins %s command in:\n%s", verb, a.stderr)
			}
			words := shellWords(t, fix)
			var out strings.Builder
			if code := cli.RunPins(words[1:], &out, &out); code != cli.ExitOK {
				t.Fatalf("%s: exit %d:\n%s", fix, code, out.String())
			}
			// bob never got a tunnel; it still waits.
			alice := w.send(w.ctx, filepath.Join(src, "x.bin"))
			if _, err := bob.stderr.wait(w.ctx, "[y/N]"); err != nil {
				t.Fatal(err)
			}
			io.WriteString(bob.stdin, "y\n")
			a = w.wait(alice, "sender after "+fix, cli.ExitOK)
			wantTrust := map[string]string{"remove": "first contact", "accept": "key pinned"}[verb]
			if !strings.Contains(a.stderr, wantTrust) {
				t.Errorf("after %s the sender does not say %q:\n%s", fix, wantTrust, a.stderr)
			}
			w.wait(bob, "receiver", cli.ExitOK)
			got, err := pins.Pins(jid.MustParse("bob@example.org"))
			if err != nil || len(got) != 1 || got[0] == xtls.SPKIFingerprint(old.Leaf) {
				t.Errorf("alice pins %v for bob (%v), want bob's new key only", got, err)
			}
		})
	}
}

// shellWords splits a command line as a POSIX shell would, for the
// quoting that cli.ShellCommand writes (single quotes).
func shellWords(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	in, inWord := false, false
	for _, r := range s {
		switch {
		case r == '\'':
			in, inWord = !in, true
		case r == ' ' && !in:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if in {
		t.Fatalf("unbalanced quotes in %q", s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}
