package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xmppxtls/xtls/examples/internal/cli"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

const testTimeout = 60 * time.Second

const (
	aliceAddr = "alice@example.net/fwd"
	bobAddr   = "bob@example.org/fwd"
	carolAddr = "carol@example.com/fwd"
)

// world is an in-memory network, a state directory, and a TCP echo
// server on 127.0.0.1 that serve forwards to.
type world struct {
	t       *testing.T
	ctx     context.Context
	network *xtlstest.Network
	state   string
	echo    string
}

func newWorld(t *testing.T) *world {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	w := &world{t: t, ctx: ctx, network: xtlstest.NewNetwork(), state: filepath.Join(t.TempDir(), "state")}
	old := connect
	connect = cli.NetworkConnect(w.network)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.echo = ln.Addr().String()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		ln.Close()
		wg.Wait()
		w.network.Close()
		connect = old
	})
	return w
}

// instance is a run of xtls-fwd.
type instance struct {
	stderr *watcher
	done   chan int
}

// start runs xtls-fwd with args until ctx ends; it returns once wait has
// been written to stderr, or the run has ended.
func (w *world) start(ctx context.Context, stdin io.Reader, stdout io.Writer, wait string, args ...string) *instance {
	in := &instance{stderr: &watcher{more: make(chan struct{}, 1)}, done: make(chan int, 1)}
	go func() {
		in.done <- run(ctx, append([]string{"-dir", w.state}, args...), stdin, stdout, in.stderr)
	}()
	if wait != "" {
		if _, err := in.stderr.wait(w.ctx, wait, in.done); err != nil {
			w.t.Fatal(err)
		}
	}
	return in
}

// exit waits for in to end with status want.
func (w *world) exit(in *instance, want int) {
	w.t.Helper()
	select {
	case code := <-in.done:
		if code != want {
			w.t.Fatalf("exit %d, want %d:\n%s", code, want, in.stderr.String())
		}
	case <-w.ctx.Done():
		w.t.Fatalf("did not end:\n%s", in.stderr.String())
	}
}

var listeningRE = regexp.MustCompile(`listening on (\S+):`)

// Ten connections at once through local and serve, each with its own
// tunnel, each echoed back intact; a JID not on -allow is refused.
func TestForward(t *testing.T) {
	w := newWorld(t)
	sctx, stopServe := context.WithCancel(w.ctx)
	bob := w.start(sctx, nil, io.Discard, "serving", "-jid", bobAddr, "serve", "-allow", "alice@example.net", "-to", w.echo)
	lctx, stopLocal := context.WithCancel(w.ctx)
	// Flags after the command, as people type them.
	alice := w.start(lctx, nil, io.Discard, "listening on", "local", "0", bobAddr, "-jid", aliceAddr)
	addr := listeningRE.FindStringSubmatch(alice.stderr.String())[1]

	const conns, size = 10, 200_000
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- echoOnce(addr, size, uint64(i))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := strings.Count(bob.stderr.String(), "alice@example.net/fwd → "+w.echo+" ("); got != conns {
		t.Errorf("serve forwarded %d connections, want %d, each its own tunnel:\n%s", got, conns, bob.stderr.String())
	}
	if _, err := bob.stderr.wait(w.ctx, "closed (0 open)", nil); err != nil {
		t.Error(err)
	}

	// carol is not allowed: her tunnel is refused, nothing reaches the
	// echo server.
	c := w.start(w.ctx, strings.NewReader("hello"), io.Discard, "", "-jid", carolAddr, "stdio", bobAddr)
	w.exit(c, cli.ExitPeer)
	if !strings.Contains(c.stderr.String(), "refused") {
		t.Errorf("carol:\n%s", c.stderr.String())
	}
	if _, err := bob.stderr.wait(w.ctx, "refused a tunnel from carol@example.com/fwd: not in -allow", nil); err != nil {
		t.Error(err)
	}

	stopLocal()
	w.exit(alice, cli.ExitInterrupted)
	stopServe()
	w.exit(bob, cli.ExitInterrupted)
}

// echoOnce sends n random bytes through addr and checks the echo.
func echoOnce(addr string, n int, seed uint64) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	data := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed)}).Read(data)
	go func() {
		c.Write(data)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("connection %d: %v", seed, err)
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("connection %d: %d bytes back, want the %d sent", seed, len(got), n)
	}
	return nil
}

// stdio carries standard input to the target and the answer to standard
// output, and writes nothing on standard error.
func TestStdio(t *testing.T) {
	w := newWorld(t)
	sctx, stopServe := context.WithCancel(w.ctx)
	bob := w.start(sctx, nil, io.Discard, "serving", "-jid", bobAddr, "serve", "-allow", aliceAddr, "-to", w.echo)
	var out bytes.Buffer
	data := bytes.Repeat([]byte("ProxyCommand "), 10000)
	a := w.start(w.ctx, bytes.NewReader(data), &out, "", "-jid", aliceAddr, "stdio", bobAddr)
	w.exit(a, cli.ExitOK)
	if !bytes.Equal(out.Bytes(), data) {
		t.Errorf("got %d bytes back, want %d", out.Len(), len(data))
	}
	if s := a.stderr.String(); s != "" {
		t.Errorf("stdio wrote on stderr:\n%s", s)
	}
	stopServe()
	w.exit(bob, cli.ExitInterrupted)
}

// watcher is an output that can be waited on.
type watcher struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	more chan struct{}
}

func (w *watcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	select {
	case w.more <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (w *watcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// wait waits until s has been written, ctx ends, or done yields (the
// program ended; the status is put back).
func (w *watcher) wait(ctx context.Context, s string, done chan int) (string, error) {
	for {
		if out := w.String(); strings.Contains(out, s) {
			return out, nil
		}
		select {
		case <-w.more:
		case code := <-done:
			done <- code
			if out := w.String(); strings.Contains(out, s) {
				return out, nil
			}
			return "", fmt.Errorf("ended (%d) without %q:\n%s", code, s, w.String())
		case <-ctx.Done():
			return "", fmt.Errorf("no %q in:\n%s", s, w.String())
		}
	}
}
