package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp"
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

// world is an in-memory network on which the tests run xtls-chat, each
// instance on a terminal of its own, their state in one directory.
type world struct {
	t       *testing.T
	ctx     context.Context
	network *xtlstest.Network
	dir     string
	terms   []*cli.Term
	// connect logs the instances in (default: cli.NetworkConnect).
	connect cli.ConnectFunc
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

// start runs xtls-chat -dir DIR args... on a new terminal.
func (w *world) start(name string, args ...string) *cli.Term {
	term := cli.NewTerm(name, nil)
	connect := w.connect
	if connect == nil {
		connect = cli.NetworkConnect(w.network)
	}
	args = append([]string{"-dir", w.dir}, args...)
	term.Start(func(stdin io.Reader, stdout, stderr io.Writer) int {
		return runWith(w.ctx, connect, args, stdin, stdout, stderr)
	})
	w.terms = append(w.terms, term)
	return term
}

// listen starts Alice listening, with flags, and waits until she does.
func (w *world) listen(flags ...string) *cli.Term {
	alice := w.start("alice", append(append([]string{"-jid", aliceAddr}, flags...), "listen")...)
	w.expect(alice, "waiting for a chat")
	return alice
}

// dial starts Bob dialing Alice, with flags.
func (w *world) dial(flags ...string) *cli.Term {
	return w.start("bob", append(append([]string{"-jid", bobAddr}, flags...), "dial", aliceAddr)...)
}

// expect waits for a line of term that contains substr.
func (w *world) expect(term *cli.Term, substr string) string {
	w.t.Helper()
	line, err := term.Expect(w.ctx, substr)
	if err != nil {
		// What the other side printed says why this one waited.
		for _, other := range w.terms {
			if other != term {
				w.t.Logf("meanwhile %s printed:\n%s", other.Name(), other.Output())
			}
		}
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

// pins returns the keys that owner has pinned for peer, from its pin file.
func (w *world) pins(owner, peer jid.JID) []xtls.Fingerprint {
	w.t.Helper()
	s, err := xtls.NewFilePinStore(filepath.Join(w.dir, owner.String(), "pins.json"))
	if err != nil {
		w.t.Fatal(err)
	}
	fps, err := s.Pins(peer)
	if err != nil {
		w.t.Fatal(err)
	}
	return fps
}

// wantPins checks the keys owner has pinned for peer.
func (w *world) wantPins(owner, peer jid.JID, want ...xtls.Fingerprint) {
	w.t.Helper()
	if got := w.pins(owner, peer); !slices.Equal(got, want) {
		w.t.Errorf("%s pinned %v for %s, want %v", owner, got, peer, want)
	}
}

// keyRE matches a fingerprint as xtls-chat shows it.
var keyRE = regexp.MustCompile(`([0-9A-F]{4} ){15}[0-9A-F]{4}`)

// shownKey returns the fingerprint in a line.
func (w *world) shownKey(line string) xtls.Fingerprint {
	w.t.Helper()
	fp, err := xtls.ParseFingerprint(keyRE.FindString(line))
	if err != nil {
		w.t.Fatalf("no fingerprint in %q: %v", line, err)
	}
	return fp
}

// firstLine returns the first line of term so far that contains substr.
func (w *world) firstLine(term *cli.Term, substr string) string {
	w.t.Helper()
	for _, line := range term.Lines() {
		if strings.Contains(line, substr) {
			return line
		}
	}
	w.t.Fatalf("no %q in:\n%s", substr, term.Output())
	return ""
}

// noLine checks that no line of term contains substr.
func (w *world) noLine(term *cli.Term, substr string) {
	w.t.Helper()
	for _, line := range term.Lines() {
		if strings.Contains(line, substr) {
			w.t.Errorf("unexpected line %q; output:\n%s", line, term.Output())
		}
	}
}

// say types text on from and waits for it on to.
func (w *world) say(from, to *cli.Term, fromBare jid.JID, text string) {
	w.t.Helper()
	from.Type(text)
	w.expect(to, fromBare.String()+"> "+text)
}

// firstContact runs a first chat in which both confirm the keys.
func (w *world) firstContact() {
	w.t.Helper()
	alice := w.listen()
	bob := w.dial()
	w.expect(alice, "type yes")
	w.expect(bob, "type yes")
	alice.Type("yes")
	bob.Type("yes")
	w.expect(bob, "chat with")
	bob.Type("/quit")
	w.expect(alice, "bob@example.org left the chat")
	w.exit(alice, exitOK)
	w.exit(bob, exitOK)
}

// On first contact each side shows the other's real key and its own, and
// asks; nothing is pinned before "yes", the key is pinned after. The TLS
// parameters are shown, lines cross both ways, /quit ends both sides. The
// second chat asks nothing.
func TestFirstContactThenPinned(t *testing.T) {
	w := newWorld(t)
	alice := w.listen()
	bob := w.dial()
	w.expect(bob, "your key:")
	aliceKey, bobKey := w.certKey(aliceBare), w.certKey(bobBare)
	if got := w.shownKey(w.firstLine(alice, "your key:")); got != aliceKey {
		t.Errorf("Alice shows her key as %s, it is %s", got, aliceKey)
	}
	for _, term := range []*cli.Term{alice, bob} {
		line := w.expect(term, "connected to")
		if !strings.Contains(line, "TLS 1.3") || !strings.Contains(line, "TLS_") || !strings.Contains(line, "X25519MLKEM768") {
			t.Errorf("no TLS version, cipher suite and group in %q", line)
		}
	}
	if got := w.shownKey(w.expect(alice, "bob@example.org's key:")); got != bobKey {
		t.Errorf("Alice is shown %s for Bob, his key is %s", got, bobKey)
	}
	if got := w.shownKey(w.expect(alice, "your key:")); got != aliceKey {
		t.Errorf("Alice is reminded of %s as her key, it is %s", got, aliceKey)
	}
	if got := w.shownKey(w.expect(bob, "alice@example.net's key:")); got != aliceKey {
		t.Errorf("Bob is shown %s for Alice, her key is %s", got, aliceKey)
	}
	w.expect(alice, "type yes")
	w.expect(bob, "type yes")
	w.wantPins(aliceBare, bobBare)
	w.wantPins(bobBare, aliceBare)

	alice.Type("yes")
	w.expect(alice, "pinned bob@example.org's key")
	w.wantPins(aliceBare, bobBare, bobKey)
	w.wantPins(bobBare, aliceBare) // Bob has not answered yet
	bob.Type("YES ")
	w.expect(bob, "pinned alice@example.net's key")
	w.wantPins(bobBare, aliceBare, aliceKey)

	w.expect(alice, "chat with bob@example.org/chat started")
	w.expect(bob, "chat with alice@example.net/chat started")
	w.say(bob, alice, bobBare, "hello Alice")
	w.say(alice, bob, aliceBare, "hi Bob, <b>&amp;</b> stays text")
	w.say(bob, alice, bobBare, "bye")
	alice.Type("/quit")
	w.expect(alice, "you left the chat")
	w.expect(bob, "alice@example.net left the chat")
	w.exit(alice, exitOK)
	w.exit(bob, exitOK)

	alice = w.listen()
	bob = w.dial()
	if got := w.shownKey(w.expect(alice, "bob@example.org's key is the one pinned")); got != bobKey {
		t.Errorf("Alice shows %s as Bob's pinned key, want %s", got, bobKey)
	}
	w.expect(bob, "alice@example.net's key is the one pinned")
	w.expect(alice, "chat with")
	w.expect(bob, "chat with")
	w.say(alice, bob, aliceBare, "again")
	bob.Type("/quit")
	w.expect(alice, "bob@example.org left the chat")
	w.exit(alice, exitOK)
	w.exit(bob, exitOK)
	for _, term := range []*cli.Term{alice, bob} {
		w.noLine(term, "first contact")
		w.noLine(term, "type yes")
	}
	w.wantPins(aliceBare, bobBare, bobKey)
}

// Anything but yes hangs up and pins nothing; the other side, which said
// yes, is told that the peer hung up.
func TestFirstContactRefused(t *testing.T) {
	w := newWorld(t)
	alice := w.listen()
	bob := w.dial()
	w.expect(alice, "type yes")
	w.expect(bob, "type yes")
	alice.Type("no, that is not what Bob read me")
	w.expect(alice, "not confirmed")
	w.exit(alice, exitTrust)
	bob.Type("yes")
	w.expect(bob, "hung up before the chat started")
	w.exit(bob, exitTrust)
	w.wantPins(aliceBare, bobBare)
	w.noLine(alice, "chat with")
	w.noLine(bob, "chat with")
}

// The end of standard input at the question is not a yes.
func TestFirstContactEOF(t *testing.T) {
	w := newWorld(t)
	alice := w.listen()
	bob := w.dial()
	w.expect(alice, "type yes")
	alice.CloseInput()
	w.exit(alice, exitTrust)
	w.expect(bob, "type yes")
	bob.CloseInput()
	w.exit(bob, exitTrust)
	w.wantPins(aliceBare, bobBare)
	w.wantPins(bobBare, aliceBare)
}

// A listener that sees a changed key warns loudly, names both keys and
// the commands that fix it, keeps the old pin and exits 5; the dialer is
// told its key was refused. After the accept command the warning named,
// run as printed, the new key is the one pinned and the chat goes on.
func TestKeyChangeSeenByListener(t *testing.T) {
	w := newWorld(t)
	w.firstContact()
	oldKey := w.certKey(bobBare)
	if err := os.Remove(filepath.Join(w.dir, bobBare.String(), "cert.pem")); err != nil {
		t.Fatal(err)
	}

	alice := w.listen()
	bob := w.dial()
	w.expect(alice, "WARNING: THE KEY OF bob@example.org HAS CHANGED")
	if got := w.shownKey(w.expect(alice, "pinned:")); got != oldKey {
		t.Errorf("warning names %s as the pinned key, want %s", got, oldKey)
	}
	newKey := w.shownKey(w.expect(alice, "presented:"))
	if newKey == oldKey {
		t.Fatal("Bob's key did not change")
	}
	fix := strings.TrimPrefix(strings.TrimSpace(w.expect(alice, "xtls-pins ")), "!!!")
	w.exit(alice, exitTrust)
	w.expect(bob, "refused our key") // Dial waits for the listener's verdict
	w.exit(bob, exitTrust)
	w.wantPins(aliceBare, bobBare, oldKey)
	if got := w.certKey(bobBare); got != newKey {
		t.Errorf("the warning names %s as the new key, Bob's is %s", newKey, got)
	}

	w.runFix(fix)
	alice = w.listen()
	bob = w.dial()
	w.expect(alice, "is the one pinned")
	w.expect(bob, "chat with")
	w.say(bob, alice, bobBare, "new laptop")
	bob.Type("/quit")
	w.expect(alice, "left the chat")
	w.exit(alice, exitOK)
	w.exit(bob, exitOK)
	w.wantPins(aliceBare, bobBare, newKey)
	w.noLine(alice, "type yes")
}

// runFix runs an xtls-pins command line as printed.
func (w *world) runFix(line string) {
	w.t.Helper()
	words := strings.Fields(strings.TrimSpace(line))
	if len(words) < 2 || words[0] != "xtls-pins" {
		w.t.Fatalf("not an xtls-pins command: %q", line)
	}
	// The fingerprint is quoted, in groups: join what the quotes hold.
	var args []string
	for i := 1; i < len(words); i++ {
		if strings.HasPrefix(words[i], "'") {
			j := i
			for !strings.HasSuffix(words[j], "'") {
				j++
			}
			args = append(args, strings.Trim(strings.Join(words[i:j+1], " "), "'"))
			i = j
			continue
		}
		args = append(args, words[i])
	}
	var out bytes.Buffer
	if code := cli.RunPins(args, &out, &out); code != cli.ExitOK {
		w.t.Fatalf("%s: exit %d\n%s", line, code, out.String())
	}
}

// A dialer that sees a changed key warns and exits 5; the listener, told
// that its key was refused, goes on waiting, and takes the call of the
// same dialer once its user has run the accept command it was shown.
func TestKeyChangeSeenByDialer(t *testing.T) {
	w := newWorld(t)
	w.firstContact()
	oldKey := w.certKey(aliceBare)
	if err := os.Remove(filepath.Join(w.dir, aliceBare.String(), "cert.pem")); err != nil {
		t.Fatal(err)
	}

	alice := w.listen()
	newKey := w.certKey(aliceBare)
	bob := w.dial()
	w.expect(bob, "WARNING: THE KEY OF alice@example.net HAS CHANGED")
	if got := w.shownKey(w.expect(bob, "pinned:")); got != oldKey {
		t.Errorf("warning names %s as the pinned key, want %s", got, oldKey)
	}
	if got := w.shownKey(w.expect(bob, "presented:")); got != newKey {
		t.Errorf("warning names %s as the new key, want %s", got, newKey)
	}
	fix := strings.TrimPrefix(strings.TrimSpace(w.expect(bob, "xtls-pins ")), "!!!")
	w.expect(bob, "refused the changed key of alice@example.net")
	w.exit(bob, exitTrust)
	w.expect(alice, "a call from bob@example.org/chat failed")
	w.wantPins(bobBare, aliceBare, oldKey)

	w.runFix(fix)
	bob = w.dial()
	w.expect(bob, "is the one pinned")
	w.expect(alice, "chat with")
	w.say(alice, bob, aliceBare, "still me")
	alice.Type("/quit")
	w.expect(bob, "left the chat")
	w.exit(alice, exitOK)
	w.exit(bob, exitOK)
	w.wantPins(bobBare, aliceBare, newKey)
}

// With -pair the two sides pin each other's keys by a code, without the
// fingerprint question; the next chat needs no code.
func TestPair(t *testing.T) {
	w := newWorld(t)
	alice := w.start("alice", "-jid", aliceAddr, "-pair", "new", "listen")
	code := strings.TrimSpace(strings.SplitN(w.expect(alice, "pairing code:"), "pairing code:", 2)[1])
	w.expect(alice, "waiting for a chat")
	if !regexp.MustCompile(`^\d{4} \d{4} \d{4}$`).MatchString(code) {
		t.Fatalf("pairing code %q", code)
	}
	bob := w.dial("-pair", code)
	if got := w.shownKey(w.expect(alice, "paired with bob@example.org")); got != w.certKey(bobBare) {
		t.Errorf("Alice shows %s as Bob's pinned key, want his", got)
	}
	if got := w.shownKey(w.expect(bob, "paired with alice@example.net")); got != w.certKey(aliceBare) {
		t.Errorf("Bob shows %s as Alice's pinned key, want hers", got)
	}
	w.expect(alice, "chat with")
	w.say(bob, alice, bobBare, "paired")
	bob.Type("/quit")
	w.expect(alice, "left the chat")
	w.exit(alice, exitOK)
	w.exit(bob, exitOK)
	w.noLine(alice, "type yes")
	w.noLine(bob, "type yes")
	w.wantPins(aliceBare, bobBare, w.certKey(bobBare))
	w.wantPins(bobBare, aliceBare, w.certKey(aliceBare))

	alice = w.listen("-pair", "new")
	bob = w.dial()
	w.expect(alice, "is the one pinned")
	w.expect(bob, "is the one pinned")
	w.say(alice, bob, aliceBare, "no code needed")
	alice.Type("/quit")
	w.expect(bob, "left the chat")
	w.exit(alice, exitOK)
	w.exit(bob, exitOK)
}

// A wrong code fails the dialer, with a clear message, and pins nothing;
// the listener says so and goes on waiting, so the other side can try
// again, and with the right code they chat. Three wrong tries use the
// code up: then the listener gives up too.
func TestPairWrongCode(t *testing.T) {
	w := newWorld(t)
	alice := w.listen("-pair", "1111 2222 3333")
	bob := w.dial("-pair", "1111 2222 3334")
	if line := w.expect(alice, "pairing with bob@example.org failed: wrong code"); !strings.Contains(line, "may try again") {
		t.Errorf("the listener does not say the other side may try again: %q", line)
	}
	w.expect(bob, "pairing with alice@example.net failed: wrong code")
	w.exit(bob, exitTrust)
	w.wantPins(aliceBare, bobBare)
	w.wantPins(bobBare, aliceBare)
	w.noLine(alice, "chat with")
	bob = w.dial("-pair", "1111 2222 3333")
	w.expect(alice, "paired with bob@example.org")
	w.expect(bob, "chat with")
	bob.Type("/quit")
	w.exit(alice, exitOK)
	w.exit(bob, exitOK)

	carol := w.listen("-pair", "4444 5555 6666")
	for range 3 {
		bob = w.dial("-pair", "4444 5555 6660")
		w.exit(bob, exitTrust)
	}
	w.expect(carol, "the code is used up")
	w.exit(carol, exitTrust)
}

// A dialer with a code that the listener does not have is told so.
func TestPairListenerWithoutCode(t *testing.T) {
	w := newWorld(t)
	alice := w.listen()
	bob := w.dial("-pair", "1111 2222 3333")
	w.expect(bob, "alice@example.net has no pairing code for us")
	w.exit(bob, exitTrust)
	w.expect(alice, "bob@example.org wants to pair, and we have no code")
	w.exit(alice, exitTrust)
}

// Lines in the chat: commands, a doubled slash, empty lines, text that
// would drive the terminal, and the end of input, which leaves the chat.
func TestChatLines(t *testing.T) {
	w := newWorld(t)
	w.firstContact()
	alice := w.listen()
	bob := w.dial()
	w.expect(alice, "chat with")
	w.expect(bob, "chat with")
	bob.Type("/shrug")
	w.expect(bob, "unknown command /shrug")
	bob.Type("")
	bob.Type("   ")
	bob.Type("//shrug")
	w.expect(alice, "bob@example.org> /shrug")
	bob.Type("red \x1b[31malert\x1b[0m and \u202egnilleps")
	w.expect(alice, "bob@example.org> red \ufffd[31malert\ufffd[0m and \ufffdgnilleps")
	bob.CloseInput()
	w.expect(bob, "you left the chat")
	w.expect(alice, "bob@example.org left the chat")
	w.exit(alice, exitOK)
	w.exit(bob, exitOK)
	var got []string
	for _, line := range alice.Lines() {
		if strings.HasPrefix(line, "bob@example.org> ") {
			got = append(got, line)
		}
	}
	if len(got) != 2 {
		t.Errorf("Alice got %q; want the doubled slash and the escaped line only", got)
	}
}

// Dialing an address where nobody listens fails with status 4.
func TestDialNobody(t *testing.T) {
	w := newWorld(t)
	bob := w.dial()
	w.expect(bob, "alice@example.net/chat is not online")
	w.exit(bob, exitPeer)
}

// A -cert that names another account is bad usage; nothing logs in.
func TestCertOfAnotherAccount(t *testing.T) {
	dir := t.TempDir()
	cert, err := xtls.GenerateCertificate(bobBare)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "bob.pem")
	if err := xtls.WriteCertificatePEM(file, cert); err != nil {
		t.Fatal(err)
	}
	connect := func(context.Context, cli.Login) (*xmpp.Session, error) {
		t.Error("logged in with another account's certificate")
		return nil, errors.New("no")
	}
	var stderr bytes.Buffer
	code := runWith(context.Background(), connect, []string{"-dir", dir, "-cert", file, "-jid", aliceAddr, "listen"},
		strings.NewReader(""), io.Discard, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), `names ["bob@example.org"], not alice@example.net`) {
		t.Errorf("status %d, stderr %q", code, stderr.String())
	}
}

// A failed login exits with status 3 and says why; the login gets the
// flags.
func TestLoginFails(t *testing.T) {
	var got cli.Login
	connect := func(_ context.Context, l cli.Login) (*xmpp.Session, error) {
		got = l
		return nil, errors.New("not-authorized")
	}
	var stderr bytes.Buffer
	code := runWith(context.Background(), connect, []string{"-dir", t.TempDir(), "-server", "localhost:5223", "-ca", "ca.pem",
		"-password", "secret", "-jid", aliceAddr, "listen"}, strings.NewReader(""), io.Discard, &stderr)
	if code != exitLogin || !strings.Contains(stderr.String(), "not-authorized") {
		t.Errorf("status %d, stderr %q", code, stderr.String())
	}
	if want := (cli.Login{Server: "localhost:5223", JID: aliceAddr, Password: "secret", CAFile: "ca.pem", Timeout: cli.DefaultTimeout}); got != want {
		t.Errorf("login %+v, want %+v", got, want)
	}
}

// printMessage shows every line of a message after the sender, with
// control characters neutralized.
func TestPrintMessage(t *testing.T) {
	var b bytes.Buffer
	printMessage(&b, "bob@example.org", "one\ntwo\r\tthree\a")
	want := "bob@example.org> one\nbob@example.org> two\ufffd\tthree\ufffd\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

// -demo plays its four chats and says what happened in each.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"-demo"}, strings.NewReader(""), &stdout, &stderr); code != exitOK {
		t.Fatalf("exit status %d; stderr:\n%s\nstdout:\n%s", code, stderr.String(), stdout.String())
	}
	out := stdout.String()
	for _, want := range []string{
		"== 1. First contact",
		"bob   | *** type yes if alice@example.net read you the same key",
		"alice < yes",
		"alice | bob@example.org> Hi Alice! Only you can read this.",
		"bob   | alice@example.net> And the servers see only Base64 in IQs.",
		"== 2. The next day",
		"alice | *** bob@example.org's key is the one pinned",
		"bob   | alice@example.net> Hello again, no fingerprints this time.",
		"== 3. Bob has a new key",
		"alice | !!! WARNING: THE KEY OF bob@example.org HAS CHANGED",
		"(exit status: alice 5, bob 5)",
		"== 4. Bob read his new key",
		"alice | bob@example.org> New laptop, same Bob.",
		"(exit status: alice 0, bob 0)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in the demo's output:\n%s", want, out)
		}
	}
	if stderr.Len() > 0 {
		t.Errorf("stderr: %s", stderr.String())
	}
	if n := strings.Count(out, "type yes if"); n != 2 {
		t.Errorf("%d questions about keys, want 2 (first contact only)", n)
	}
}

// Bad command lines exit with status 2 and say why.
func TestUsage(t *testing.T) {
	for i, tc := range [...]struct {
		args []string
		want string
	}{
		0:  {nil, "-jid is required"},
		1:  {[]string{"-jid", "alice@example.net"}, "say listen or dial"},
		2:  {[]string{"-jid", "example.net", "listen"}, "want user@domain"},
		3:  {[]string{"-jid", "alice@example.net", "dial"}, "dial takes one argument"},
		4:  {[]string{"-jid", "alice@example.net", "dial", "example.org"}, "want user@domain"},
		5:  {[]string{"-jid", "alice@example.net", "listen", "now"}, "listen takes no argument"},
		6:  {[]string{"-jid", "alice@example.net", "-pair", "new", "dial", "bob@example.org/x"}, "-pair new is for the listener"},
		7:  {[]string{"-jid", "alice@example.net", "dial", "alice@example.net/x"}, "our own account"},
		8:  {[]string{"-demo", "listen"}, "take no other argument"},
		9:  {[]string{"-jid", "alice@example.net", "chat"}, "unknown command"},
		10: {[]string{"-jid", "alice@example.net", "dial", "example.org/x"}, "want user@domain"},
	} {
		var stderr bytes.Buffer
		code := run(context.Background(), tc.args, strings.NewReader(""), &bytes.Buffer{}, &stderr)
		if code != exitUsage || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%d: %q: status %d, stderr %q; want %d and %q", i, tc.args, code, stderr.String(), exitUsage, tc.want)
		}
	}
}
