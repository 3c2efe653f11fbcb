package main

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/examples/internal/cli"
	"github.com/xmppxtls/xtls/xtls"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// testTimeout bounds every run in these tests.
const testTimeout = 20 * time.Second

// section returns the lines of out from the one starting with head up to
// the next empty line.
func section(t *testing.T, out, head string) string {
	t.Helper()
	i := strings.Index(out, "\n"+head)
	if i < 0 {
		t.Fatalf("no section %q in output:\n%s", head, out)
	}
	s := out[i+1:]
	if j := strings.Index(s, "\n\n"); j >= 0 {
		s = s[:j]
	}
	return s
}

// field returns the value of the line "  label   value" in s.
func field(t *testing.T, s, label string) string {
	t.Helper()
	for line := range strings.SplitSeq(s, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), label); ok {
			return strings.TrimSpace(rest)
		}
	}
	t.Fatalf("no line %q in:\n%s", label, s)
	return ""
}

// fingerprintIn parses the first fingerprint written in s.
func fingerprintIn(t *testing.T, s string) xtls.Fingerprint {
	t.Helper()
	m := regexp.MustCompile(`([0-9A-F]{4} ){15}[0-9A-F]{4}`).FindString(s)
	fp, err := xtls.ParseFingerprint(m)
	if err != nil {
		t.Fatalf("no fingerprint in %q: %v", s, err)
	}
	return fp
}

// TestLocal runs the demo as `go run ./examples/demo` does and checks the
// report: TLS 1.3 with the hybrid group, first use then pinned (and
// resumed), the keys each side saw equal to the other's certificate, and
// the messages.
func TestLocal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if code := run(ctx, nil, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s\nstdout:\n%s", code, &stderr, &stdout)
	}
	out := stdout.String()
	aliceFP := fingerprintIn(t, field(t, out, "alice@example.net"))
	bobFP := fingerprintIn(t, field(t, out, "bob@example.org"))
	if aliceFP == bobFP {
		t.Fatalf("alice and bob have the same key %s", aliceFP)
	}
	for i, want := range []struct{ trust, resumed string }{
		{"first-use", "no"},
		{"pinned", "yes"},
	} {
		c := section(t, out, "Connection "+string(rune('1'+i))+": alice@example.net/phone dials bob@example.org/laptop")
		for label, value := range map[string]string{
			"TLS version:":  "TLS 1.3",
			"cipher suite:": "TLS_AES_",
			"key exchange:": "X25519MLKEM768",
			"resumed:":      want.resumed,
			"alice -> bob:": `"hello bob, this is alice"`,
			"bob -> alice:": `"hello alice, this is bob"`,
		} {
			if got := field(t, c, label); !strings.HasPrefix(got, value) {
				t.Errorf("connection %d: %s %q, want %q...", i+1, label, got, value)
			}
		}
		if got := field(t, c, "alice trusts bob:"); !strings.HasPrefix(got, want.trust+" ") {
			t.Errorf("connection %d: alice trusts bob: %q, want %s", i+1, got, want.trust)
		}
		if got := field(t, c, "bob trusts alice:"); !strings.HasPrefix(got, want.trust+" ") {
			t.Errorf("connection %d: bob trusts alice: %q, want %s", i+1, got, want.trust)
		}
		if got := fingerprintIn(t, field(t, c, "alice sees key:")); got != bobFP {
			t.Errorf("connection %d: alice saw key %s, bob's is %s", i+1, got, bobFP)
		}
		if got := fingerprintIn(t, field(t, c, "bob sees key:")); got != aliceFP {
			t.Errorf("connection %d: bob saw key %s, alice's is %s", i+1, got, aliceFP)
		}
		if strings.Contains(c, "DOES NOT MATCH") {
			t.Errorf("connection %d: a key did not match:\n%s", i+1, c)
		}
	}
	if strings.Contains(out, "<iq") {
		t.Errorf("stanzas printed without -trace:\n%s", out)
	}
	if stderr.Len() > 0 {
		t.Errorf("stderr: %s", &stderr)
	}
}

// TestTrace checks that -trace shows the tunnel's stanzas, one a line, with
// the Base64 of the TLS records cut short.
func TestTrace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"-trace"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s\nstdout:\n%s", code, &stderr, &stdout)
	}
	out := stdout.String()
	for _, want := range []string{
		`alice -> bob:  <iq type="set" id="`,
		`<start xmlns="urn:xmpp:xtls:0" sid="`,
		`bob -> alice:  <iq type="result" id="`,
		`<proceed xmlns="urn:xmpp:xtls:0"`,
		// The ClientHello goes right behind the start.
		`seq="0">FgMB`,
		`<close xmlns="urn:xmpp:xtls:0"`,
		`<closed xmlns="urn:xmpp:xtls:0"`,
		"alice trusts bob:    pinned",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if regexp.MustCompile(`[A-Za-z0-9+/]{40}`).MatchString(out) {
		t.Errorf("long Base64 left in the trace:\n%s", out)
	}
	if n := strings.Count(out, "<data "); n < 8 {
		t.Errorf("%d data stanzas traced, want at least 8 (two handshakes, two messages each way)", n)
	}
}

// TestShortenStanza checks the one-line form of a traced stanza.
func TestShortenStanza(t *testing.T) {
	raw := `<iq from='alice@example.net/phone' xmlns="jabber:client" type="set" to="bob@example.org/laptop" id="x1">` +
		`<data xmlns="urn:xmpp:xtls:0" sid="s" seq="0">` + strings.Repeat("QUJD", 100) + `</data></iq>`
	want := `<iq type="set" id="x1"><data xmlns="urn:xmpp:xtls:0" sid="s" seq="0">QUJDQUJDQUJDQUJDQUJDQUJD...[300 bytes]</data></iq>`
	if got := shortenStanza([]byte(raw)); got != want {
		t.Errorf("shortenStanza:\n got %s\nwant %s", got, want)
	}
	raw = `<iq xmlns="jabber:client" type="result" to="alice@example.net/phone" from='bob@example.org/laptop' id="x2"></iq>`
	want = `<iq type="result" id="x2"/>`
	if got := shortenStanza([]byte(raw)); got != want {
		t.Errorf("shortenStanza:\n got %s\nwant %s", got, want)
	}
}

// TestUsage checks that bad command lines exit with status 2 before
// connecting anywhere.
func TestUsage(t *testing.T) {
	connected := false
	setConnect(t, func(context.Context, cli.Login) (*xmpp.Session, error) {
		connected = true
		return nil, errors.New("unexpected")
	})
	for _, args := range [][]string{
		{"-nosuchflag"},
		{"extra"},
		{"-listen"},
		{"-peer", "bob@example.org/demo"},
		{"-server", "localhost:5222"},
		{"-jid", "alice@example.net"},
		{"-jid", "alice@example.net", "-peer", "example.org"},
		{"-jid", "alice@example.net", "-peer", "not a jid@@"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != exitUsage {
			t.Errorf("%q: exit %d, want %d; stderr:\n%s", args, code, exitUsage, &stderr)
		}
		if !strings.Contains(stderr.String(), "usage:") {
			t.Errorf("%q: no usage on stderr:\n%s", args, &stderr)
		}
	}
	if connected {
		t.Error("connected despite bad usage")
	}
}

// TestLoginFailure checks the exit status when the server cannot be
// logged in to.
func TestLoginFailure(t *testing.T) {
	setConnect(t, func(context.Context, cli.Login) (*xmpp.Session, error) {
		return nil, errors.New("not-authorized")
	})
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-jid", "alice@example.net", "-peer", "bob@example.org/demo"}, &stdout, &stderr)
	if code != exitLogin {
		t.Errorf("exit %d, want %d", code, exitLogin)
	}
	if !strings.Contains(stderr.String(), "not-authorized") {
		t.Errorf("stderr does not say why:\n%s", &stderr)
	}
}

// TestRemote runs the two processes of the server mode, with sessions of
// an in-memory network standing in for the server: one listens, the other
// dials it, twice.
func TestRemote(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	network := xtlstest.NewNetwork()
	defer network.Close()
	var logins sync.Map
	setConnect(t, func(ctx context.Context, l cli.Login) (*xmpp.Session, error) {
		logins.Store(l.JID, l)
		return network.Session(ctx, jid.MustParse(l.JID))
	})

	bobOut := newWatcher("Listening.")
	bobDone := make(chan int, 1)
	go func() {
		bobDone <- run(ctx, []string{"-server", "xmpp.example:5222", "-password", "b", "-ca", "ca.pem",
			"-jid", "bob@example.org/demo", "-listen", "-peer", "alice@example.net/demo"}, bobOut, bobOut)
	}()
	select {
	case <-bobOut.seen:
	case code := <-bobDone:
		t.Fatalf("listener exited with %d before listening:\n%s", code, bobOut)
	}
	var aliceOut bytes.Buffer
	defer func() {
		if t.Failed() {
			t.Logf("dialer's output:\n%s", &aliceOut)
		}
	}()
	code := run(ctx, []string{"-jid", "alice@example.net/demo", "-peer", "bob@example.org/demo"}, &aliceOut, &aliceOut)
	if code != exitOK {
		t.Errorf("dialer: exit %d:\n%s", code, &aliceOut)
	}
	if code := <-bobDone; code != exitOK {
		t.Errorf("listener: exit %d:\n%s", code, bobOut)
	}

	if l, _ := logins.Load("bob@example.org/demo"); l != (cli.Login{Server: "xmpp.example:5222", JID: "bob@example.org/demo", Password: "b", CAFile: "ca.pem", Timeout: cli.DefaultTimeout}) {
		t.Errorf("listener logged in with %+v", l)
	}
	for i, trust := range []string{"first-use", "pinned"} {
		n := string(rune('1' + i))
		a := section(t, aliceOut.String(), "Connection "+n+": alice@example.net/demo dials bob@example.org/demo")
		b := section(t, bobOut.String(), "Connection "+n+": alice@example.net/demo dialed bob@example.org/demo")
		for _, s := range []string{a, b} {
			if got := field(t, s, "key exchange:"); got != "X25519MLKEM768 (hybrid post-quantum)" {
				t.Errorf("connection %s: key exchange %q", n, got)
			}
			if got := field(t, s, "alice -> bob:"); got != `"hello bob, this is alice"` {
				t.Errorf("connection %s: alice -> bob %s", n, got)
			}
			if got := field(t, s, "bob -> alice:"); got != `"hello alice, this is bob"` {
				t.Errorf("connection %s: bob -> alice %s", n, got)
			}
		}
		if got := field(t, a, "alice trusts bob:"); !strings.HasPrefix(got, trust+" ") {
			t.Errorf("connection %s: alice trusts bob: %q, want %s", n, got, trust)
		}
		if got := field(t, b, "bob trusts alice:"); !strings.HasPrefix(got, trust+" ") {
			t.Errorf("connection %s: bob trusts alice: %q, want %s", n, got, trust)
		}
		// Each side saw the key the other printed as its own.
		if got, want := fingerprintIn(t, field(t, a, "alice sees key:")), fingerprintIn(t, section(t, bobOut.String(), "My certificate")); got != want {
			t.Errorf("connection %s: alice saw %s, bob has %s", n, got, want)
		}
		if got, want := fingerprintIn(t, field(t, b, "bob sees key:")), fingerprintIn(t, section(t, aliceOut.String(), "My certificate")); got != want {
			t.Errorf("connection %s: bob saw %s, alice has %s", n, got, want)
		}
	}
}

// setConnect replaces connect for the duration of the test.
func setConnect(t *testing.T, f func(context.Context, cli.Login) (*xmpp.Session, error)) {
	old := connect
	connect = f
	t.Cleanup(func() { connect = old })
}

// watcher is an output that tells when a string has been written to it.
type watcher struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
}

// newWatcher returns a watcher waiting for want.
func newWatcher(want string) *watcher {
	return &watcher{want: want, seen: make(chan struct{})}
}

// Write records p and closes w.seen once w.want has been written.
func (w *watcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	had := strings.Contains(w.buf.String(), w.want)
	w.buf.Write(p)
	if !had && strings.Contains(w.buf.String(), w.want) {
		close(w.seen)
	}
	return len(p), nil
}

// String returns what was written so far.
func (w *watcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
