// Package integration runs xtls through real XMPP servers (Prosody and
// ejabberd from the Debian packages) that the tests start themselves on
// 127.0.0.1. A server that cannot start fails the tests; nothing skips.
package integration

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp"
	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/ping"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/integration/harness"
	"github.com/xmppxtls/xtls/xtls"
)

// users registered on every server the tests start.
var users = []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory"}

func password(user string) string { return user + "-secret" }

// servers are started once for the tests that leave them running as they
// were; tests that stop a server or need other limits start their own.
var shared struct {
	once     sync.Once
	prosody  *harness.Server
	ejabberd *harness.Server
	err      error
	dir      string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.prosody != nil {
		shared.prosody.Close()
	}
	if shared.ejabberd != nil {
		shared.ejabberd.Close()
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	closeStock()
	os.Exit(code)
}

func startShared() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	shared.dir, shared.err = os.MkdirTemp("", "xtls-integration-")
	if shared.err != nil {
		return
	}
	if shared.prosody, shared.err = harness.StartProsody(ctx, harness.ProsodyOptions{Dir: shared.dir + "/prosody"}); shared.err != nil {
		return
	}
	if shared.ejabberd, shared.err = harness.StartEjabberd(ctx, harness.EjabberdOptions{Dir: shared.dir + "/ejabberd"}); shared.err != nil {
		return
	}
	for _, s := range []*harness.Server{shared.prosody, shared.ejabberd} {
		for _, u := range users {
			if shared.err = s.AddUser(ctx, u, password(u)); shared.err != nil {
				return
			}
		}
	}
}

// eachServer runs f against the shared Prosody and the shared ejabberd.
func eachServer(t *testing.T, f func(t *testing.T, s *harness.Server)) {
	shared.once.Do(startShared)
	if shared.err != nil {
		t.Fatalf("starting the shared servers: %v", shared.err)
	}
	for _, s := range []*harness.Server{shared.prosody, shared.ejabberd} {
		t.Run(s.Kind(), func(t *testing.T) { f(t, s) })
	}
}

func addUsers(t *testing.T, s *harness.Server) {
	for _, u := range users {
		harness.AddUserT(t, s, u, password(u))
	}
}

// party is a client logged in to a real server with an xtls Handler.
type party struct {
	s      *xmpp.Session
	h      *xtls.Handler
	addr   jid.JID
	done   chan struct{}
	err    error
	closed bool
}

type partyOpt struct {
	noXTLS   bool
	withPing bool // answer XEP-0199 pings
	cfg      xtls.Config
	wrap     func(net.Conn) net.Conn // the TCP connection to the server, if set
}

// connect logs user in to srv and serves its session with disco and, unless
// noXTLS, an xtls Handler that trusts on first use and, unless cfg says
// otherwise, does not hold tunnels for a reconnect (Config.Reattach).
func connect(t *testing.T, srv *harness.Server, user string, o partyOpt) *party {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	s, err := srv.ConnectWrapped(ctx, user, password(user), o.wrap)
	require.NoError(t, err, "%s", srv.Log())
	p := &party{s: s, addr: s.LocalAddr(), done: make(chan struct{})}
	opts := []mux.Option{disco.Handle()}
	if o.withPing {
		opts = append(opts, ping.Handle())
	}
	if !o.noXTLS {
		cfg := o.cfg
		if cfg.Certificate.Certificate == nil {
			cfg.Certificate, err = xtls.GenerateCertificate(p.addr.Bare())
			require.NoError(t, err)
		}
		if cfg.Pins == nil {
			cfg.Pins = xtls.NewMemPinStore()
			cfg.TrustOnFirstUse = true
		}
		if cfg.Reattach == 0 {
			// These parties never log in again: tunnels whose session
			// ends fail at once, as the tests of ends and failures
			// expect. TestTransferSurvivesReconnect asks for it.
			cfg.Reattach = -1
		}
		p.h = xtls.NewHandler(s, &cfg)
		opts = append(opts, p.h.Handle())
	}
	go func() {
		p.err = s.Serve(mux.New(stanza.NSClient, opts...))
		if p.h != nil {
			p.h.SessionEnded(p.err)
		}
		close(p.done)
	}()
	t.Cleanup(p.close)
	return p
}

// close ends the party: Handler, stream, connection.
func (p *party) close() {
	if p.closed {
		return
	}
	p.closed = true
	if p.h != nil {
		p.h.Close()
	}
	p.s.Close()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.s.Conn().Close()
		<-p.done
	}
	p.s.Conn().Close()
}

// tunnel dials from a to b and returns both ends.
func tunnel(t *testing.T, a, b *party, opts ...xtls.DialOption) (*xtls.Conn, *xtls.Conn) {
	t.Helper()
	ln := b.h.Listen()
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(acc)
			return
		}
		acc <- c
	}()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	c1, err := a.h.Dial(ctx, b.addr, opts...)
	require.NoError(t, err)
	c2, ok := <-acc
	require.True(t, ok)
	return c1, c2.(*xtls.Conn)
}

// exchange sends n pseudo-random bytes each way at once and checks SHA-256.
func exchange(t *testing.T, c1, c2 net.Conn, n int64) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	one := func(from, to net.Conn, seed byte) {
		defer wg.Done()
		want, got := sha256.New(), sha256.New()
		werr := make(chan error, 1)
		go func() {
			src := io.LimitReader(rand.NewChaCha8([32]byte{seed}), n)
			_, err := io.Copy(from, io.TeeReader(src, want))
			werr <- err
		}()
		if _, err := io.CopyN(got, to, n); err != nil {
			errs <- fmt.Errorf("read: %w", err)
			return
		}
		if err := <-werr; err != nil {
			errs <- fmt.Errorf("write: %w", err)
			return
		}
		if string(want.Sum(nil)) != string(got.Sum(nil)) {
			errs <- fmt.Errorf("SHA-256 differs")
		}
	}
	wg.Add(2)
	go one(c1, c2, 1)
	go one(c2, c1, 2)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// noLeaks fails the test if goroutines started during it are still running
// once its cleanups have run (it must be called first, so that its cleanup
// runs last). Goroutines may take a moment to unwind after the last close,
// so it looks again for up to 10 s.
func noLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("%d goroutines left running:\n%s", n-before, relevant(string(buf)))
		}
	})
}

// relevant keeps the goroutine stacks that mention this project or mellium.
func relevant(stacks string) string {
	var keep []string
	for _, g := range strings.Split(stacks, "\n\n") {
		if strings.Contains(g, "xmppxtls") || strings.Contains(g, "mellium") {
			keep = append(keep, g)
		}
	}
	return strings.Join(keep, "\n\n")
}
