package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/examples/internal/cli"
	"github.com/xmppxtls/xtls/xtls"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// testTimeout bounds every test.
const testTimeout = 20 * time.Second

// Bare JIDs of the two accounts.
var (
	aliceBare = jid.MustParse(aliceAddr).Bare()
	bobBare   = jid.MustParse(bobAddr).Bare()
)

// world is an in-memory network on which the tests run xtls-pair, each
// instance on a terminal of its own, their state in one directory.
type world struct {
	t       *testing.T
	ctx     context.Context
	network *xtlstest.Network
	dir     string
	terms   []*cli.Term
}

// newWorld makes the network. When the test ends, instances still running
// are interrupted and waited for, and the network is closed.
func newWorld(t *testing.T) *world {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	w := &world{t: t, ctx: ctx, network: xtlstest.NewNetwork(), dir: t.TempDir()}
	t.Cleanup(func() {
		cancel()
		for _, term := range w.terms {
			term.Wait()
		}
		w.network.Close()
	})
	return w
}

// start runs xtls-pair -dir DIR args... on a new terminal.
func (w *world) start(name string, args ...string) *cli.Term {
	term := cli.NewTerm(name, nil)
	connect := cli.NetworkConnect(w.network)
	args = append([]string{"-dir", w.dir}, args...)
	term.Start(func(stdin io.Reader, stdout, stderr io.Writer) int {
		return runWith(w.ctx, connect, args, stdin, stdout, stderr)
	})
	w.terms = append(w.terms, term)
	return term
}

// listen starts Alice listening and returns her terminal and the code she
// shows.
func (w *world) listen() (*cli.Term, string) {
	w.t.Helper()
	alice := w.start("alice", "-jid", aliceAddr, "listen")
	line := w.expect(alice, "pairing code:")
	code := strings.TrimSpace(strings.TrimPrefix(line, "pairing code:"))
	if !regexp.MustCompile(`^\d{4} \d{4} \d{4}$`).MatchString(code) {
		w.t.Fatalf("pairing code %q", code)
	}
	w.expect(alice, "waiting")
	return alice, code
}

// dial starts Bob dialing Alice and waits for the question.
func (w *world) dial() *cli.Term {
	w.t.Helper()
	bob := w.start("bob", "-jid", bobAddr, "dial", aliceAddr)
	w.expect(bob, "type the pairing code that alice@example.net/pair shows")
	return bob
}

// expect waits for a line of term that contains substr.
func (w *world) expect(term *cli.Term, substr string) string {
	w.t.Helper()
	line, err := term.Expect(w.ctx, substr)
	if err != nil {
		w.t.Fatal(err)
	}
	return line
}

// exit waits for term's program to end with status want.
func (w *world) exit(term *cli.Term, want int) {
	w.t.Helper()
	if got := term.Wait(); got != want {
		w.t.Fatalf("exit status %d, want %d; output:\n%s", got, want, term.Output())
	}
}

// certKey returns the fingerprint of the key in the certificate of bare.
func (w *world) certKey(bare jid.JID) xtls.Fingerprint {
	w.t.Helper()
	c, err := xtls.LoadCertificatePEM(filepath.Join(w.dir, bare.String(), "cert.pem"))
	if err != nil {
		w.t.Fatal(err)
	}
	return xtls.SPKIFingerprint(c.Leaf)
}

// wantPins checks the keys owner has pinned for peer in its pin file.
func (w *world) wantPins(owner, peer jid.JID, want ...xtls.Fingerprint) {
	w.t.Helper()
	s, err := xtls.NewFilePinStore(filepath.Join(w.dir, owner.String(), "pins.json"))
	if err != nil {
		w.t.Fatal(err)
	}
	got, err := s.Pins(peer)
	if err != nil {
		w.t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		w.t.Errorf("%s pinned %v for %s, want %v", owner, got, peer, want)
	}
}

// The right code, as shown or typed differently, pairs: each side prints
// the key it pinned, which is the other's, and the pin files hold them;
// then the reconnection is trusted by the pins alone.
func TestPairRightCode(t *testing.T) {
	for name, typed := range map[string]func(string) string{
		"as shown":  func(c string) string { return c },
		"no spaces": func(c string) string { return strings.ReplaceAll(c, " ", "") },
		"dashes":    func(c string) string { return " " + strings.ReplaceAll(c, " ", "-") + " " },
	} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			alice, code := w.listen()
			bob := w.dial()
			w.wantPins(aliceBare, bobBare)
			w.wantPins(bobBare, aliceBare)
			bob.Type(typed(code))
			aliceKey, bobKey := w.certKey(aliceBare), w.certKey(bobBare)
			w.expect(bob, "paired with alice@example.net: pinned "+aliceKey.String())
			w.expect(alice, "paired with bob@example.org: pinned "+bobKey.String())
			w.expect(bob, "reconnected: trust pinned")
			w.expect(alice, "reconnected: trust pinned")
			w.exit(alice, exitOK)
			w.exit(bob, exitOK)
			w.wantPins(aliceBare, bobBare, bobKey)
			w.wantPins(bobBare, aliceBare, aliceKey)
		})
	}
}

// A wrong code pins nothing; both sides say why, the dialer asks again
// and the listener goes on waiting, and the right code then pairs.
func TestPairWrongCode(t *testing.T) {
	w := newWorld(t)
	alice, code := w.listen()
	bob := w.dial()
	bob.Type(wrongDigit(code))
	w.expect(bob, "pairing with alice@example.net failed: wrong code: the code typed here is not the one alice@example.net shows")
	w.expect(alice, "pairing with bob@example.org failed: wrong code: bob@example.org typed another code than ours")
	w.expect(bob, "type the code again (2 more tries)")
	w.wantPins(aliceBare, bobBare)
	w.wantPins(bobBare, aliceBare)
	bob.Type(code)
	w.expect(bob, "reconnected: trust pinned")
	w.expect(alice, "reconnected: trust pinned")
	w.exit(alice, exitOK)
	w.exit(bob, exitOK)
}

// Three wrong codes use the code up: nothing is pinned, both exit 5.
func TestPairThreeWrongCodes(t *testing.T) {
	w := newWorld(t)
	alice, code := w.listen()
	bob := w.dial()
	for range 3 {
		bob.Type(wrongDigit(code))
	}
	w.exit(alice, exitTrust)
	w.exit(bob, exitTrust)
	w.wantPins(aliceBare, bobBare)
	w.wantPins(bobBare, aliceBare)
	for _, term := range []*cli.Term{alice, bob} {
		for _, line := range term.Lines() {
			if strings.Contains(line, "paired with") || strings.Contains(line, "reconnected") {
				t.Errorf("after a wrong code: %q", line)
			}
		}
	}
}

// No code typed: nothing is dialed.
func TestNoCode(t *testing.T) {
	w := newWorld(t)
	w.listen()
	bob := w.dial()
	bob.CloseInput()
	w.expect(bob, "no code typed")
	w.exit(bob, exitOther)
	w.wantPins(aliceBare, bobBare)
}

// Dialing an address where nobody listens fails with status 4.
func TestDialNobody(t *testing.T) {
	w := newWorld(t)
	bob := w.dial()
	bob.Type("1234 5678 9012")
	w.expect(bob, "alice@example.net/pair is not online")
	w.exit(bob, exitPeer)
}

// wrongDigit changes the last digit only.
func TestWrongDigit(t *testing.T) {
	for in, want := range map[string]string{"0000 0000 0000": "0000 0000 0001", "1234 5678 9019": "1234 5678 9010"} {
		if got := wrongDigit(in); got != want {
			t.Errorf("wrongDigit(%q) = %q, want %q", in, got, want)
		}
	}
}

// -demo pairs with the right code, then fails with a wrong one, and shows
// both sides.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"-demo"}, strings.NewReader(""), &stdout, &stderr); code != exitOK {
		t.Fatalf("exit status %d; stderr:\n%s\nstdout:\n%s", code, stderr.String(), stdout.String())
	}
	out := stdout.String()
	first, rest, ok := strings.Cut(out, "== 2.")
	second, third, ok2 := strings.Cut(rest, "== 3.")
	if !ok || !ok2 {
		t.Fatalf("not three acts:\n%s", out)
	}
	shown := regexp.MustCompile(`alice \| pairing code: (\d{4} \d{4} \d{4})`).FindAllStringSubmatch(out, -1)
	if len(shown) != 3 {
		t.Fatalf("want three codes shown:\n%s", out)
	}
	for _, want := range []string{
		"bob   < " + shown[0][1],
		"alice | paired with bob@example.org: pinned ",
		"bob   | paired with alice@example.net: pinned ",
		"alice | reconnected: trust pinned",
		"bob   | reconnected: trust pinned",
		"(exit status: alice 0, bob 0)",
	} {
		if !strings.Contains(first, want) {
			t.Errorf("no %q in the first act:\n%s", want, first)
		}
	}
	for _, want := range []string{
		"bob   < " + wrongDigit(shown[1][1]),
		"bob   | xtls-pair: pairing with alice@example.net failed: wrong code",
		"alice | pairing with bob@example.org failed: wrong code",
		"bob   < " + shown[1][1],
		"bob   | reconnected: trust pinned",
		"(exit status: alice 0, bob 0)",
	} {
		if !strings.Contains(second, want) {
			t.Errorf("no %q in the second act:\n%s", want, second)
		}
	}
	if !strings.Contains(third, "(exit status: alice 5, bob 5)") || strings.Contains(third, "paired with") {
		t.Errorf("the third act:\n%s", third)
	}
	if stderr.Len() > 0 {
		t.Errorf("stderr: %s", stderr.String())
	}
}

// Bad command lines exit with status 2 and say why.
func TestUsage(t *testing.T) {
	for i, tc := range [...]struct {
		args []string
		want string
	}{
		0: {nil, "-jid is required"},
		1: {[]string{"-jid", "alice@example.net"}, "say listen or dial"},
		2: {[]string{"-jid", "example.net", "listen"}, "want user@domain"},
		3: {[]string{"-jid", "alice@example.net", "dial"}, "dial takes one argument"},
		4: {[]string{"-jid", "alice@example.net", "dial", "example.org"}, "want user@domain"},
		5: {[]string{"-jid", "alice@example.net", "listen", "now"}, "listen takes no argument"},
		6: {[]string{"-jid", "alice@example.net", "dial", "alice@example.net/x"}, "our own account"},
		7: {[]string{"-demo", "listen"}, "-demo takes no other argument"},
		8: {[]string{"-jid", "alice@example.net", "pair"}, "unknown command"},
	} {
		var stderr bytes.Buffer
		code := run(context.Background(), tc.args, strings.NewReader(""), &bytes.Buffer{}, &stderr)
		if code != exitUsage || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%d: %q: status %d, stderr %q; want %d and %q", i, tc.args, code, stderr.String(), exitUsage, tc.want)
		}
	}
}
