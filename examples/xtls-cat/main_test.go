package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp"
	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/examples/internal/cli"
	"github.com/xmppxtls/xtls/xtls"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// testTimeout bounds every test.
const testTimeout = 20 * time.Second

// world is an in-memory network that xtls-cat logs in to: connect hands
// out its sessions, by the full JID given to -jid.
type world struct {
	t       *testing.T
	network *xtlstest.Network
	dir     string
}

// newWorld makes the network and points connect at it until the test ends.
func newWorld(t *testing.T, opts ...xtlstest.Option) *world {
	w := &world{t: t, network: xtlstest.NewNetwork(opts...), dir: t.TempDir()}
	stateDir = filepath.Join(w.dir, "state")
	t.Cleanup(func() { w.network.Close() })
	setConnect(t, func(ctx context.Context, l cli.Login) (*xmpp.Session, error) {
		return w.network.Session(ctx, jid.MustParse(l.JID))
	})
	return w
}

// setConnect replaces connect for the duration of the test.
func setConnect(t *testing.T, f func(context.Context, cli.Login) (*xmpp.Session, error)) {
	old := connect
	connect = f
	t.Cleanup(func() { connect = old })
}

// certFile writes a fresh certificate for addr (a bare JID) as its
// account's certificate in the state directory and returns the file's path
// and the key's fingerprint.
func (w *world) certFile(addr string) (string, xtls.Fingerprint) {
	w.t.Helper()
	c, err := xtls.GenerateCertificate(jid.MustParse(addr))
	if err != nil {
		w.t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(stateDir, addr), 0o700); err != nil {
		w.t.Fatal(err)
	}
	path := filepath.Join(stateDir, addr, "cert.pem")
	if err := xtls.WriteCertificatePEM(path, c); err != nil {
		w.t.Fatal(err)
	}
	return path, xtls.SPKIFingerprint(c.Leaf)
}

// pinFile is the pin file of the account bare in the state directory.
func pinFile(bare string) string { return filepath.Join(stateDir, bare, "pins.json") }

// result is what one run of xtls-cat did.
type result struct {
	code   int
	stdout []byte
	stderr string
}

// side is a run of xtls-cat in its own goroutine.
type side struct {
	stderr *watcher
	done   chan result
}

// stateDir is the state directory of the tests' instances; each test
// sets it to a directory of its own.
var stateDir string

// start runs xtls-cat with args and stdin. If wait is not empty, start
// returns once wait has been written to stderr (or the run has ended).
func start(ctx context.Context, args []string, stdin []byte, wait string) *side {
	s := &side{stderr: newWatcher(wait), done: make(chan result, 1)}
	args = append([]string{"-dir", stateDir}, args...)
	go func() {
		var stdout bytes.Buffer
		code := run(ctx, args, bytes.NewReader(stdin), &stdout, s.stderr)
		s.done <- result{code, stdout.Bytes(), s.stderr.String()}
	}()
	if wait != "" {
		select {
		case <-s.stderr.seen:
		case r := <-s.done:
			s.done <- r
		}
	}
	return s
}

// listen starts a listening xtls-cat and returns once it listens.
func listen(ctx context.Context, args []string, stdin []byte) *side {
	return start(ctx, append(args, "listen"), stdin, "listening as")
}

// dial runs a dialing xtls-cat to the end.
func dial(ctx context.Context, args []string, peer string, stdin []byte) result {
	return <-start(ctx, append(args, "dial", peer), stdin, "").done
}

// randomBytes returns n pseudo-random bytes.
func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed)})
	r.Read(b)
	return b
}

// TestTransfer pipes 1 MiB through the tunnel one way, the other way, and
// both ways at once, and compares digests. The side with nothing to send
// closes its direction at once and must still receive everything
// (half-close). The pins are kept in files: the first run pins on first
// use, the later ones find the keys pinned.
// A contact is dialed by its bare JID: the tool finds the resource that
// runs an XTLS client from the presence it announced.
func TestDialBareJID(t *testing.T) {
	newWorld(t, xtlstest.AllContacts())
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	bob := listen(ctx, []string{"-jid", "bob@example.org/laptop", "-tofu"}, nil)
	a := dial(ctx, []string{"-jid", "alice@example.net/a", "-tofu"}, "bob@example.org", []byte("by bare JID"))
	b := <-bob.done
	if a.code != exitOK || b.code != exitOK || string(b.stdout) != "by bare JID" {
		t.Fatalf("dialer %d, listener %d, received %q\ndialer stderr:\n%s\nlistener stderr:\n%s", a.code, b.code, b.stdout, a.stderr, b.stderr)
	}
	if !strings.Contains(a.stderr, "bob@example.org/laptop") {
		t.Errorf("the dialer does not say which resource it reached:\n%s", a.stderr)
	}
}

func TestTransfer(t *testing.T) {
	w := newWorld(t)
	_, aliceFP := w.certFile("alice@example.net")
	_, bobFP := w.certFile("bob@example.org")
	alicePins, bobPins := pinFile("alice@example.net"), pinFile("bob@example.org")

	for i, tc := range []struct {
		name         string
		toBob, toAli int
		trust        string
	}{
		{"alice sends", 1 << 20, 0, "first-use"},
		{"bob sends", 0, 1 << 20, "pinned"},
		{"both send", 1 << 20, 1<<20 + 12345, "pinned"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			res := "/t" + string(rune('0'+i))
			toBob, toAlice := randomBytes(tc.toBob, 1), randomBytes(tc.toAli, 2)

			bob := listen(ctx, []string{"-jid", "bob@example.org" + res, "-tofu"}, toAlice)
			a := dial(ctx, []string{"-jid", "alice@example.net" + res, "-tofu"}, "bob@example.org"+res, toBob)
			b := <-bob.done
			if a.code != exitOK || b.code != exitOK {
				t.Fatalf("exit codes: dialer %d, listener %d\ndialer stderr:\n%s\nlistener stderr:\n%s", a.code, b.code, a.stderr, b.stderr)
			}
			if sha256.Sum256(b.stdout) != sha256.Sum256(toBob) {
				t.Errorf("bob received %d bytes, not the %d alice sent", len(b.stdout), len(toBob))
			}
			if sha256.Sum256(a.stdout) != sha256.Sum256(toAlice) {
				t.Errorf("alice received %d bytes, not the %d bob sent", len(a.stdout), len(toAlice))
			}
			for _, r := range []result{a, b} {
				if !strings.Contains(r.stderr, "TLS 1.3") || !strings.Contains(r.stderr, "trust: "+tc.trust+";") {
					t.Errorf("stderr does not report TLS 1.3 and trust %s:\n%s", tc.trust, r.stderr)
				}
			}
			if !strings.Contains(a.stderr, "key "+bobFP.String()) {
				t.Errorf("alice does not report bob's key %s:\n%s", bobFP, a.stderr)
			}
		})
	}
	// The keys were pinned in the files.
	for _, c := range []struct {
		file string
		peer string
		want xtls.Fingerprint
	}{{alicePins, "bob@example.org", bobFP}, {bobPins, "alice@example.net", aliceFP}} {
		pins, err := xtls.NewFilePinStore(c.file)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pins.Pins(jid.MustParse(c.peer))
		if err != nil || len(got) != 1 || got[0] != c.want {
			t.Errorf("%s pins %v for %s (%v), want [%s]", filepath.Base(c.file), got, c.peer, err, c.want)
		}
	}
}

// TestProgress runs with -progress into an output that is not a terminal:
// plain lines, never a carriage return, and a summary with the exact
// byte counts. The first run makes each account's key, and says so.
func TestProgress(t *testing.T) {
	newWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	data := randomBytes(300_000, 3)
	bob := listen(ctx, []string{"-jid", "bob@example.org/b", "-tofu", "-progress"}, nil)
	a := dial(ctx, []string{"-jid", "alice@example.net/a", "-tofu", "-progress"}, "bob@example.org/b", data)
	b := <-bob.done
	if a.code != exitOK || b.code != exitOK {
		t.Fatalf("exit codes: dialer %d, listener %d\n%s\n%s", a.code, b.code, a.stderr, b.stderr)
	}
	if !bytes.Equal(b.stdout, data) {
		t.Errorf("bob received %d bytes, alice sent %d", len(b.stdout), len(data))
	}
	for _, c := range []struct {
		r        result
		who      string
		sent     string
		received string
	}{{a, "alice@example.net", "300000", "0"}, {b, "bob@example.org", "0", "300000"}} {
		if !strings.Contains(c.r.stderr, "made a key for "+c.who+", kept in ") {
			t.Errorf("%s: no word of the new key:\n%s", c.who, c.r.stderr)
		}
		want := "xtls-cat: sent " + c.sent + " bytes ("
		if !strings.Contains(c.r.stderr, want) || !strings.Contains(c.r.stderr, "received "+c.received+" bytes (") {
			t.Errorf("%s: no summary %q:\n%s", c.who, want, c.r.stderr)
		}
		if strings.Contains(c.r.stderr, "\r") {
			t.Errorf("%s: a carriage return into a file:\n%q", c.who, c.r.stderr)
		}
	}
}

// TestPinMismatch dials a peer whose key is not the one pinned: exit 5,
// nothing transferred. The listener goes on waiting until interrupted.
func TestPinMismatch(t *testing.T) {
	w := newWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := os.MkdirAll(filepath.Join(stateDir, "alice@example.net"), 0o700); err != nil {
		t.Fatal(err)
	}
	pinsFile := pinFile("alice@example.net")
	pins, err := xtls.NewFilePinStore(pinsFile)
	if err != nil {
		t.Fatal(err)
	}
	_, oldFP := w.certFile("bob@example.org") // a key bob no longer uses
	if err := pins.AddPin(jid.MustParse("bob@example.org"), oldFP); err != nil {
		t.Fatal(err)
	}
	_, bobFP := w.certFile("bob@example.org")

	lctx, stopListener := context.WithCancel(ctx)
	defer stopListener()
	bob := listen(lctx, []string{"-jid", "bob@example.org/b", "-tofu"}, []byte("secret"))
	a := dial(ctx, []string{"-jid", "alice@example.net/a"}, "bob@example.org/b", []byte("hello"))
	if a.code != exitTrust {
		t.Errorf("dialer: exit %d, want %d:\n%s", a.code, exitTrust, a.stderr)
		t.Logf("listener so far:\n%s", bob.stderr)
	}
	if !strings.Contains(a.stderr, bobFP.String()) || !strings.Contains(a.stderr, "xtls-pins -dir "+stateDir+" -jid alice@example.net accept bob@example.org '"+bobFP.String()+"'") || len(a.stdout) != 0 {
		t.Errorf("dialer: stdout %q; stderr does not name the presented key %s:\n%s", a.stdout, bobFP, a.stderr)
	}
	// The pin was kept.
	if got, _ := pins.Pins(jid.MustParse("bob@example.org")); len(got) != 1 || got[0] != oldFP {
		t.Errorf("pins changed to %v", got)
	}
	stopListener()
	b := <-bob.done
	if b.code != exitInterrupted || len(b.stdout) != 0 || !strings.Contains(b.stderr, "interrupted") {
		t.Errorf("listener: exit %d, stdout %q, stderr:\n%s", b.code, b.stdout, b.stderr)
	}
}

// TestRefusedByListener dials a listener that has another key of ours
// pinned: the dialer exits 5 (not trusted), not 6 (transfer failed), and
// nothing crosses.
func TestRefusedByListener(t *testing.T) {
	w := newWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := os.MkdirAll(filepath.Join(stateDir, "bob@example.org"), 0o700); err != nil {
		t.Fatal(err)
	}
	pins, err := xtls.NewFilePinStore(pinFile("bob@example.org"))
	if err != nil {
		t.Fatal(err)
	}
	_, oldFP := w.certFile("alice@example.net") // a key alice no longer uses
	if err := pins.AddPin(jid.MustParse("alice@example.net"), oldFP); err != nil {
		t.Fatal(err)
	}
	w.certFile("alice@example.net") // the key she uses now

	lctx, stopListener := context.WithCancel(ctx)
	defer stopListener()
	bob := listen(lctx, []string{"-jid", "bob@example.org/b"}, []byte("secret"))
	a := dial(ctx, []string{"-jid", "alice@example.net/a", "-tofu"}, "bob@example.org/b", []byte("hello"))
	if a.code != exitTrust || len(a.stdout) != 0 || !strings.Contains(a.stderr, "refused our key") {
		t.Errorf("dialer: exit %d, want %d, stdout %q:\n%s", a.code, exitTrust, a.stdout, a.stderr)
	}
	stopListener()
	if b := <-bob.done; len(b.stdout) != 0 {
		t.Errorf("listener: exit %d, stdout %q, stderr:\n%s", b.code, b.stdout, b.stderr)
	}
}

func TestPeerErrors(t *testing.T) {
	w := newWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	// carol's client has no XTLS: it answers the start with
	// service-unavailable and disco#info without the feature.
	carol, err := w.network.Session(ctx, jid.MustParse("carol@example.com/x"))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		carol.Serve(mux.New(stanza.NSClient, disco.Handle()))
	}()
	defer func() {
		carol.Close()
		carol.Conn().Close()
		<-served
	}()

	// dave has XTLS but does not listen.
	ds, err := w.network.Session(ctx, jid.MustParse("dave@example.com/y"))
	if err != nil {
		t.Fatal(err)
	}
	dc, err := xtls.GenerateCertificate(ds.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	dave := cli.Serve(ds, &xtls.Config{Certificate: dc})
	defer dave.Close()

	for i, tc := range []struct {
		peer string
		want string
	}{
		{"carol@example.com/x", "carol@example.com/x does not speak XTLS"},
		{"dave@example.com/y", "dave@example.com/y refused the tunnel"},
		{"erin@example.com/offline", "erin@example.com/offline is not online"},
	} {
		// A new resource each time: the network frees an address only
		// some time after its client has gone.
		self := "alice@example.net/" + string(rune('a'+i))
		r := dial(ctx, []string{"-jid", self, "-tofu"}, tc.peer, []byte("hello"))
		if r.code != exitPeer {
			t.Errorf("%s: exit %d, want %d:\n%s", tc.peer, r.code, exitPeer, r.stderr)
		}
		if !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%s: stderr does not say %q:\n%s", tc.peer, tc.want, r.stderr)
		}
	}
}

// TestPairing pairs with a code and no other trust: the tunnel works and
// the trust is paired. A wrong code fails with exit 5.
func TestPairing(t *testing.T) {
	newWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	bob := listen(ctx, []string{"-jid", "bob@example.org/b", "-pair", "0421 7730 5918"}, []byte("from bob"))
	a := dial(ctx, []string{"-jid", "alice@example.net/a", "-pair", "0421-7730-5918"}, "bob@example.org/b", []byte("from alice"))
	b := <-bob.done
	if a.code != exitOK || b.code != exitOK {
		t.Fatalf("exit codes: dialer %d, listener %d\n%s\n%s", a.code, b.code, a.stderr, b.stderr)
	}
	if string(a.stdout) != "from bob" || string(b.stdout) != "from alice" {
		t.Errorf("alice got %q, bob got %q", a.stdout, b.stdout)
	}
	if !strings.Contains(a.stderr, "trust: paired;") || !strings.Contains(b.stderr, "trust: paired;") {
		t.Errorf("not paired:\n%s\n%s", a.stderr, b.stderr)
	}

	lctx, stopListener := context.WithCancel(ctx)
	defer stopListener()
	bob = listen(lctx, []string{"-jid", "bob@example.org/c", "-pair", "1111 2222 3333"}, nil)
	a = dial(ctx, []string{"-jid", "alice@example.net/c", "-pair", "1111 2222 4444"}, "bob@example.org/c", []byte("x"))
	stopListener()
	b = <-bob.done
	if a.code != exitTrust || len(a.stdout) != 0 {
		t.Errorf("wrong code: exit %d, want %d, stdout %q:\n%s\nlistener:\n%s", a.code, exitTrust, a.stdout, a.stderr, b.stderr)
	}
	if b.code != exitInterrupted || len(b.stdout) != 0 {
		t.Errorf("listener after a wrong code: exit %d, stdout %q:\n%s", b.code, b.stdout, b.stderr)
	}
}

// TestTruncated reads from a peer that ends the tunnel without a TLS
// close_notify: what came is written out, and the exit status is 6.
func TestTruncated(t *testing.T) {
	w := newWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	bs, err := w.network.Session(ctx, jid.MustParse("bob@example.org/b"))
	if err != nil {
		t.Fatal(err)
	}
	bc, err := xtls.GenerateCertificate(bs.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	bob := cli.Serve(bs, &xtls.Config{Certificate: bc, Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true})
	defer bob.Close()
	ln := bob.Handler.Listen()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		conn := c.(*xtls.Conn)
		io.WriteString(conn, "partial")
		conn.Tunnel().Close() // no close_notify
		conn.Close()
	}()

	r := dial(ctx, []string{"-jid", "alice@example.net/a", "-tofu"}, "bob@example.org/b", nil)
	if r.code != exitTransfer {
		t.Errorf("exit %d, want %d:\n%s", r.code, exitTransfer, r.stderr)
	}
	if string(r.stdout) != "partial" {
		t.Errorf("stdout %q, want what came before the cut", r.stdout)
	}
	if !strings.Contains(r.stderr, "close_notify") {
		t.Errorf("stderr does not say the data may be cut short:\n%s", r.stderr)
	}
}

// TestUsage checks bad command lines: exit 2, before logging in.
func TestUsage(t *testing.T) {
	w := newWorld(t)
	aliceCert, _ := w.certFile("alice@example.net")
	t.Setenv(cli.DirEnv, stateDir) // no profile of the user's
	connected := false
	setConnect(t, func(context.Context, cli.Login) (*xmpp.Session, error) {
		connected = true
		return nil, errors.New("unexpected")
	})
	for _, args := range [][]string{
		{},
		{"-nosuchflag", "listen"},
		{"listen"},
		{"-jid", "example.net", "listen"},
		{"-jid", "not a jid@@", "listen"},
		{"-jid", "alice@example.net/a"},
		{"-jid", "alice@example.net/a", "send"},
		{"-jid", "alice@example.net/a", "listen", "extra"},
		{"-jid", "alice@example.net/a", "dial"},
		{"-jid", "alice@example.net/a", "dial", "example.org"},
		{"-jid", "alice@example.net/a", "dial", "bob@example.org/b", "extra"},
		{"-jid", "mallory@example.net/a", "-cert", aliceCert, "listen"},
		{"-jid", "alice@example.net/a", "-cert", filepath.Join(w.dir, "none.pem"), "listen"},
		{"-jid", "alice@example.net/a", "-peer-ca", aliceCert + ".missing", "listen"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), append([]string{"-dir", stateDir}, args...), nil, &stdout, &stderr); code != exitUsage {
			t.Errorf("%q: exit %d, want %d; stderr:\n%s", args, code, exitUsage, &stderr)
		}
	}
	if connected {
		t.Error("logged in despite bad usage")
	}
}

// TestLoginFailure checks the exit status when logging in fails.
func TestLoginFailure(t *testing.T) {
	setConnect(t, func(context.Context, cli.Login) (*xmpp.Session, error) {
		return nil, errors.New("not-authorized")
	})
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-dir", t.TempDir(), "-jid", "alice@example.net/a", "listen"}, nil, &stdout, &stderr)
	if code != exitLogin || !strings.Contains(stderr.String(), "not-authorized") {
		t.Errorf("exit %d, want %d; stderr:\n%s", code, exitLogin, &stderr)
	}
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
	had := w.want == "" || strings.Contains(w.buf.String(), w.want)
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
