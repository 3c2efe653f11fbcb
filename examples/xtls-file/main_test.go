package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"

	"github.com/xmppxtls/xtls/examples/internal/cli"
	"github.com/xmppxtls/xtls/transport"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// testTimeout bounds every test.
const testTimeout = 90 * time.Second

const (
	aliceAddr = "alice@example.net/laptop"
	bobAddr   = "bob@example.org/desk"
)

// world is an in-memory network and a state directory shared by the
// instances of a test (each account has its own subdirectory, as on a
// real machine shared by two users).
type world struct {
	t       *testing.T
	ctx     context.Context
	network *xtlstest.Network
	state   string
	dir     string
}

func newWorld(t *testing.T, opts ...xtlstest.Option) *world {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	w := &world{t: t, ctx: ctx, network: xtlstest.NewNetwork(opts...), dir: t.TempDir()}
	w.state = filepath.Join(w.dir, "state")
	old, oldAlive := connect, keepAliveEvery
	connect = cli.NetworkConnect(w.network)
	// A receiver notices a vanished sender within a second.
	keepAliveEvery = 300 * time.Millisecond
	t.Cleanup(func() {
		connect, keepAliveEvery = old, oldAlive
		cancel()
		w.network.Close()
	})
	return w
}

// result is what one instance did.
type result struct {
	code   int
	stderr string
}

// instance is a run of xtls-file in a goroutine.
type instance struct {
	stderr *watcher
	stdin  *io.PipeWriter
	done   chan result
}

// start runs xtls-file with args (after -dir); if wait is not empty it
// returns once wait has been written to stderr, or the run has ended.
func (w *world) start(ctx context.Context, wait string, args ...string) *instance {
	in := &instance{stderr: newWatcher(wait), done: make(chan result, 1)}
	pr, pw := io.Pipe()
	in.stdin = pw
	go func() {
		code := run(ctx, append([]string{"-dir", w.state}, args...), pr, io.Discard, in.stderr)
		pr.Close()
		in.done <- result{code, in.stderr.String()}
	}()
	if wait != "" {
		select {
		case <-in.stderr.seen:
		case r := <-in.done:
			in.done <- r
		}
	}
	return in
}

// receive starts a receiver of bob's into out, and waits until it listens.
func (w *world) receive(ctx context.Context, out string, flags ...string) *instance {
	args := append([]string{"-jid", bobAddr, "-o", out}, flags...)
	return w.start(ctx, "waiting for a transfer", append(args, "receive")...)
}

// send starts alice sending paths to bob.
func (w *world) send(ctx context.Context, paths ...string) *instance {
	return w.start(ctx, "", append([]string{"-jid", aliceAddr, "send", bobAddr}, paths...)...)
}

// wait returns the result of in, and checks its exit status.
func (w *world) wait(in *instance, name string, want int) result {
	w.t.Helper()
	select {
	case r := <-in.done:
		if r.code != want {
			w.t.Fatalf("%s: exit %d, want %d:\n%s", name, r.code, want, r.stderr)
		}
		return r
	case <-w.ctx.Done():
		w.t.Fatalf("%s did not end:\n%s", name, in.stderr.String())
	}
	return result{}
}

// writeRandom writes n pseudo-random bytes to path.
func writeRandom(t *testing.T, path string, n int64, seed uint64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	if _, err := io.CopyN(f, rand.NewChaCha8(key), n); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// digests returns the SHA-256 of every file under root, by relative path,
// and the folders (as "/").
func digests(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			out[rel] = "/"
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[rel] = fmt.Sprintf("%x", sha256.Sum256(data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sameTree checks that got holds what want holds under name.
func sameTree(t *testing.T, want, got string) {
	t.Helper()
	a, b := digests(t, want), digests(t, got)
	if len(a) != len(b) {
		t.Fatalf("%d entries sent, %d received", len(a), len(b))
	}
	for k, v := range a {
		if b[k] != v {
			t.Fatalf("%s differs: sent %s, received %s", k, v, b[k])
		}
	}
}

// A folder of 1,000 small files and one 200 MB file arrive identical;
// the receiver is asked, and said yes on its standard input. alice's
// server has a SOCKS5 proxy (XEP-0065): the tunnel moves onto it, and the
// summary says so. The second time the same command sends nothing but the
// proof that all is there, and -yes needs no answer (the key is pinned
// now).
func TestFolderAndBigFile(t *testing.T) {
	w := newWorld(t, xtlstest.Proxy65("example.net"))
	src := filepath.Join(w.dir, "src")
	for i := range 1000 {
		writeRandom(t, filepath.Join(src, "folder", fmt.Sprintf("sub%d", i%7), fmt.Sprintf("f%04d.txt", i)), int64(i%3000), uint64(i))
	}
	if err := os.MkdirAll(filepath.Join(src, "folder", "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	// 200 MB; under the race detector, whose cost is in encoding/xml's
	// Go code per byte (70 s for 200 MB), a quarter of it.
	big := int64(200 << 20)
	if raceEnabled {
		big /= 4
	}
	writeRandom(t, filepath.Join(src, "big.bin"), big, 99999)
	// The in-memory network has no server whose software picks the chunk
	// size: take the largest, as against a server without limits. Keeps
	// the 200 MB within CI's time under the race detector.
	transportConfig = &transport.Config{ChunkSize: 65535}
	defer func() { transportConfig = nil }()
	out := filepath.Join(w.dir, "out")

	bob := w.receive(w.ctx, out)
	began := time.Now()
	alice := w.send(w.ctx, filepath.Join(src, "folder"), filepath.Join(src, "big.bin"))
	if _, err := bob.stderr.wait(w.ctx, "[y/N]"); err != nil {
		t.Fatal(err)
	}
	io.WriteString(bob.stdin, "y\n")
	a := w.wait(alice, "sender", cli.ExitOK)
	b := w.wait(bob, "receiver", cli.ExitOK)
	t.Logf("1000 files and %s in %v", cli.Size(big), time.Since(began).Round(time.Millisecond))
	for _, want := range []string{"alice@example.net/laptop (first contact: key ", "wants to send you 1001 files, ",
		"folder/  (1000 files, ", "big.bin  (" + cli.Size(big) + ")"} {
		if !strings.Contains(b.stderr, want) {
			t.Errorf("the receiver was not shown %q:\n%s", want, b.stderr)
		}
	}
	if strings.Contains(a.stderr, "\r") || strings.Contains(b.stderr, "\r") {
		t.Error("a carriage return was written to an output that is not a terminal")
	}
	sameTree(t, src, out)
	if sent, skipped := sentBytes(t, a.stderr); sent != total(t, src) || skipped != 0 {
		t.Errorf("sent %d bytes, %d already there; want %d, 0", sent, skipped, total(t, src))
	}
	if !strings.Contains(a.stderr, "through a bytestream (proxy proxy.example.net)") {
		t.Errorf("the sender does not say the file went through the proxy:\n%s", a.stderr)
	}

	// Again: everything is there and verified, nothing is sent.
	bob = w.receive(w.ctx, out, "-yes")
	a = w.wait(w.send(w.ctx, filepath.Join(src, "folder"), filepath.Join(src, "big.bin")), "sender", cli.ExitOK)
	w.wait(bob, "receiver", cli.ExitOK)
	if sent, skipped := sentBytes(t, a.stderr); sent != 0 || skipped != total(t, src) {
		t.Errorf("second run: sent %d bytes, %d already there; want 0, %d", sent, skipped, total(t, src))
	}
	sameTree(t, src, out)
}

// total is the size of the files under root.
func total(t *testing.T, root string) int64 {
	var n int64
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			fi, _ := d.Info()
			n += fi.Size()
		}
		return err
	})
	return n
}

var sentRE = regexp.MustCompile(`sent (\d+) bytes \((\d+) were already there\)`)

// sentBytes reads the sender's summary.
func sentBytes(t *testing.T, stderr string) (sent, skipped int64) {
	t.Helper()
	m := sentRE.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no summary in:\n%s", stderr)
	}
	sent, _ = strconv.ParseInt(m[1], 10, 64)
	skipped, _ = strconv.ParseInt(m[2], 10, 64)
	return sent, skipped
}

// A transfer cut halfway resumes when the same commands run again: it
// sends at most what is missing plus one block, and the files arrive
// identical. Cut three ways: the receiver interrupted (Ctrl-C), the
// sender's network lost, the receiver's network lost.
func TestResume(t *testing.T) {
	for _, tc := range []struct {
		name string
		cut  func(w *world, stopBob context.CancelFunc)
		// codes of the cut run
		alice, bob int
	}{
		{"receiver interrupted", func(w *world, stopBob context.CancelFunc) { stopBob() }, cli.ExitPeerAborted, cli.ExitInterrupted},
		{"sender's network lost", func(w *world, _ context.CancelFunc) {
			w.network.Disconnect(jid.MustParse(aliceAddr), stream.Error{})
		}, cli.ExitBroken, cli.ExitBroken},
		{"receiver's network lost", func(w *world, _ context.CancelFunc) {
			w.network.Disconnect(jid.MustParse(bobAddr), stream.Error{})
		}, cli.ExitBroken, cli.ExitBroken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			src := filepath.Join(w.dir, "src")
			const size = 24 << 20
			writeRandom(t, filepath.Join(src, "a", "small.txt"), 1000, 1)
			writeRandom(t, filepath.Join(src, "a", "data.bin"), size, 2)
			writeRandom(t, filepath.Join(src, "a", "z-after.bin"), 100_000, 3)
			out := filepath.Join(w.dir, "out")

			// The first run is cut once half the big file is there.
			bctx, stopBob := context.WithCancel(w.ctx)
			defer stopBob()
			var once sync.Once
			var gotAtCut int64
			afterData = func(got int64) {
				if got >= size/2 {
					once.Do(func() {
						gotAtCut = got
						tc.cut(w, stopBob)
					})
				}
			}
			defer func() { afterData = nil }()
			bob := w.receive(bctx, out, "-yes", "-from", "alice@example.net")
			alice := w.send(w.ctx, filepath.Join(src, "a"))
			// First contact: -yes refuses an unpinned sender, so the
			// first run is confirmed by hand.
			w.wait(alice, "sender, first contact with -yes", cli.ExitPeer)
			w.wait(bob, "receiver, first contact with -yes", cli.ExitTrust)
			bob = w.receive(bctx, out, "-from", "alice@example.net")
			alice = w.send(w.ctx, filepath.Join(src, "a"))
			if _, err := bob.stderr.wait(w.ctx, "[y/N]"); err != nil {
				t.Fatal(err)
			}
			io.WriteString(bob.stdin, "yes\n")
			a := w.wait(alice, "cut sender", tc.alice)
			w.wait(bob, "cut receiver", tc.bob)
			afterData = nil
			if gotAtCut == 0 {
				t.Fatalf("the transfer was not cut:\n%s", a.stderr)
			}
			part := filepath.Join(out, "a", "data.bin"+partSuffix)
			fi, err := os.Stat(part)
			if err != nil {
				t.Fatalf("no part file after the cut: %v", err)
			}
			t.Logf("cut with %d bytes received, %d on disk", gotAtCut, fi.Size())

			// The same commands again; the key is pinned now, -yes does.
			bob = w.receive(w.ctx, out, "-yes", "-from", "alice@example.net")
			a = w.wait(w.send(w.ctx, filepath.Join(src, "a")), "resumed sender", cli.ExitOK)
			b := w.wait(bob, "resumed receiver", cli.ExitOK)
			sent, skipped := sentBytes(t, a.stderr)
			all := total(t, src)
			if sent+skipped != all {
				t.Errorf("sent %d + already there %d != %d", sent, skipped, all)
			}
			// What the receiver had received when cut: of data.bin,
			// gotAtCut minus the small file before it.
			missing := all - (gotAtCut - 1000) - 1000
			if sent > missing+blockSize {
				t.Errorf("resumed run sent %d bytes; at most %d are missing, plus one block", sent, missing)
			}
			if !strings.Contains(b.stderr, "resuming: ") {
				t.Errorf("the receiver did not say it resumes:\n%s", b.stderr)
			}
			sameTree(t, src, out)
			if _, err := os.Stat(part); !os.IsNotExist(err) {
				t.Errorf("the part file is still there: %v", err)
			}
		})
	}
}

// A sender that gets SIGTERM aborts the tunnel with a word of why: the
// receiver exits with its own status, 7, "aborted: interrupted
// (terminated)", and the sender with 130.
func TestSigtermSender(t *testing.T) {
	w := newWorld(t)
	src := filepath.Join(w.dir, "src")
	writeRandom(t, filepath.Join(src, "data.bin"), 16<<20, 5)
	out := filepath.Join(w.dir, "out")
	sigctx, stop := cli.SignalContext(w.ctx)
	defer stop()
	var once sync.Once
	afterData = func(got int64) {
		once.Do(func() { syscall.Kill(os.Getpid(), syscall.SIGTERM) })
	}
	defer func() { afterData = nil }()
	bob := w.receive(w.ctx, out)
	alice := w.send(sigctx, filepath.Join(src, "data.bin"))
	if _, err := bob.stderr.wait(w.ctx, "[y/N]"); err != nil {
		t.Fatal(err)
	}
	io.WriteString(bob.stdin, "y\n")
	a := w.wait(alice, "sender", cli.ExitInterrupted)
	b := w.wait(bob, "receiver", cli.ExitPeerAborted)
	if !strings.Contains(b.stderr, "alice@example.net aborted: interrupted (terminated)") {
		t.Errorf("the receiver does not say why:\n%s", b.stderr)
	}
	if !strings.Contains(a.stderr, "interrupted (terminated)") {
		t.Errorf("the sender does not say why:\n%s", a.stderr)
	}
}

// The receiver says no: nothing is written, the sender exits 4.
func TestDecline(t *testing.T) {
	w := newWorld(t)
	src := filepath.Join(w.dir, "src")
	writeRandom(t, filepath.Join(src, "x.bin"), 1000, 7)
	out := filepath.Join(w.dir, "out")
	bob := w.receive(w.ctx, out)
	alice := w.send(w.ctx, filepath.Join(src, "x.bin"))
	if _, err := bob.stderr.wait(w.ctx, "[y/N]"); err != nil {
		t.Fatal(err)
	}
	io.WriteString(bob.stdin, "n\n")
	a := w.wait(alice, "sender", cli.ExitPeer)
	w.wait(bob, "receiver", cli.ExitOther)
	if !strings.Contains(a.stderr, "bob@example.org declined: the receiver said no") {
		t.Errorf("sender:\n%s", a.stderr)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("written despite no: %v", entries)
	}
	// Declined: the first-contact key was not pinned.
	if list, err := cli.PinList(filepath.Join(w.state, "bob@example.org", "pins.json")); err != nil || len(list) != 0 {
		t.Errorf("bob pinned %v (%v)", list, err)
	}
}

// A sender not on -from is refused before its handshake.
func TestFromRefuses(t *testing.T) {
	w := newWorld(t)
	src := filepath.Join(w.dir, "src")
	writeRandom(t, filepath.Join(src, "x.bin"), 10, 7)
	ctx, cancel := context.WithCancel(w.ctx)
	bob := w.receive(ctx, filepath.Join(w.dir, "out"), "-from", "carol@example.com")
	a := w.wait(w.send(w.ctx, filepath.Join(src, "x.bin")), "sender", cli.ExitPeer)
	if !strings.Contains(a.stderr, "refused") {
		t.Errorf("sender:\n%s", a.stderr)
	}
	cancel()
	w.wait(bob, "receiver", cli.ExitInterrupted)
}

// watcher is an output that tells when a string has been written to it.
type watcher struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
	more chan struct{}
}

func newWatcher(want string) *watcher {
	return &watcher{want: want, seen: make(chan struct{}), more: make(chan struct{}, 1)}
}

// Write records p.
func (w *watcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	had := w.want == "" || strings.Contains(w.buf.String(), w.want)
	w.buf.Write(p)
	if !had && strings.Contains(w.buf.String(), w.want) {
		close(w.seen)
	}
	select {
	case w.more <- struct{}{}:
	default:
	}
	return len(p), nil
}

// wait waits until s has been written.
func (w *watcher) wait(ctx context.Context, s string) (string, error) {
	for {
		if out := w.String(); strings.Contains(out, s) {
			return out, nil
		}
		select {
		case <-w.more:
		case <-ctx.Done():
			return "", fmt.Errorf("no %q in:\n%s", s, w.String())
		}
	}
}

// String returns what was written so far.
func (w *watcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// -q: the sender says nothing when all goes well.
func TestQuiet(t *testing.T) {
	w := newWorld(t)
	src := filepath.Join(w.dir, "src")
	writeRandom(t, filepath.Join(src, "x.bin"), 100_000, 9)
	bob := w.receive(w.ctx, filepath.Join(w.dir, "out"))
	alice := w.start(w.ctx, "", "-q", "-jid", aliceAddr, "send", bobAddr, filepath.Join(src, "x.bin"))
	if _, err := bob.stderr.wait(w.ctx, "[y/N]"); err != nil {
		t.Fatal(err)
	}
	io.WriteString(bob.stdin, "y\n")
	if a := w.wait(alice, "sender", cli.ExitOK); a.stderr != "" {
		t.Errorf("the quiet sender wrote:\n%s", a.stderr)
	}
	w.wait(bob, "receiver", cli.ExitOK)
}
