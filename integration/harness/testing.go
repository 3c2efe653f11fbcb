package harness

import (
	"context"
	"testing"
	"time"

	"mellium.im/xmpp"
)

// closeTimeout bounds how long a Client's cleanup waits for the server to
// close the stream after the client closed its side.
const closeTimeout = 5 * time.Second

// StartProsodyT starts Prosody for a test or benchmark: opts.Dir defaults to
// t.TempDir(), a failure to start calls t.Fatal (never t.Skip: a server that
// cannot start fails the test), and t.Cleanup closes the server, failing the
// test if it crashed or would not stop.
func StartProsodyT(t testing.TB, opts ProsodyOptions) *Server {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	s, err := StartProsody(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	closeOnCleanup(t, s)
	return s
}

// StartEjabberdT starts ejabberd for a test or benchmark, as [StartProsodyT]
// does Prosody.
func StartEjabberdT(t testing.TB, opts EjabberdOptions) *Server {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	s, err := StartEjabberd(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	closeOnCleanup(t, s)
	return s
}

// StartFederatedT starts a federated Prosody and ejabberd pair (see
// [StartFederated]) for a test or benchmark, as [StartProsodyT] does one server.
func StartFederatedT(t testing.TB, p ProsodyOptions, e EjabberdOptions) (prosody, ejabberd *Server) {
	t.Helper()
	if p.Dir == "" {
		p.Dir = t.TempDir()
	}
	if e.Dir == "" {
		e.Dir = t.TempDir()
	}
	prosody, ejabberd, err := StartFederated(t.Context(), p, e)
	if err != nil {
		t.Fatal(err)
	}
	closeOnCleanup(t, prosody)
	closeOnCleanup(t, ejabberd)
	return prosody, ejabberd
}

func closeOnCleanup(t testing.TB, s *Server) {
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
}

// AddUserT creates the account local@s.Domain() (see [Server.AddUser]) and
// calls t.Fatal on error.
func AddUserT(t testing.TB, s *Server, local, password string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := s.AddUser(ctx, local, password); err != nil {
		t.Fatalf("%v\n%s", err, s.Log())
	}
}

// Client is a logged-in session whose Serve loop runs in the background.
// The embedded Session's LocalAddr() is the full JID the server bound.
type Client struct {
	*xmpp.Session
	done chan struct{}
	err  error
}

// Done returns a channel that is closed when Serve has returned, e.g.
// because the server closed the stream.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns what Serve returned: nil after an orderly close, a
// stream.Error if the server ended the stream with one. Call it only after
// Done is closed.
func (c *Client) Err() error { return c.err }

// ConnectT logs local@s.Domain() in (see [Server.Connect]), runs
// Serve(h) in a goroutine (h may be nil), and calls t.Fatal on error.
// At cleanup, which runs before the server's own cleanup, it closes the
// stream, waits for Serve to return (closing the connection if the server
// does not answer within 5 s) and closes the connection.
func ConnectT(t testing.TB, s *Server, local, password string, h xmpp.Handler) *Client {
	t.Helper()
	return connectT(t, s, h, func(ctx context.Context) (*xmpp.Session, error) {
		return s.Connect(ctx, local, password)
	})
}

// ConnectResourceT is [ConnectT] binding the given resource (see
// [Server.ConnectResource]): the Client's LocalAddr() is
// local@s.Domain()/resource.
func ConnectResourceT(t testing.TB, s *Server, local, resource, password string, h xmpp.Handler) *Client {
	t.Helper()
	return connectT(t, s, h, func(ctx context.Context) (*xmpp.Session, error) {
		return s.ConnectResource(ctx, local, resource, password)
	})
}

func connectT(t testing.TB, s *Server, h xmpp.Handler, connect func(context.Context) (*xmpp.Session, error)) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	session, err := connect(ctx)
	if err != nil {
		t.Fatalf("%v\n%s", err, s.Log())
	}
	c := &Client{Session: session, done: make(chan struct{})}
	go func() {
		c.err = session.Serve(h)
		close(c.done)
	}()
	t.Cleanup(func() {
		session.Close()
		timer := time.NewTimer(closeTimeout)
		defer timer.Stop()
		select {
		case <-c.done:
		case <-timer.C:
			t.Logf("harness: %s: the server did not close the stream within %v; closing the connection", session.LocalAddr(), closeTimeout)
			session.Conn().Close()
			<-c.done
		}
		session.Conn().Close()
	})
	return c
}
