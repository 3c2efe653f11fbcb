package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/examples/internal/cli"
	"github.com/xmppxtls/xtls/xtls"
)

// targetTimeout bounds connecting a tunnel to the -to address.
const targetTimeout = 10 * time.Second

// forwarder is one run.
type forwarder struct {
	o     *options
	errw  io.Writer
	party *cli.Party
	open  atomic.Int64 // connections being forwarded
}

// say prints a status line, unless -q or stdio without -v.
func (f *forwarder) say(format string, a ...any) {
	if f.o.Quiet || f.o.mode == "stdio" && !f.o.Verbose {
		return
	}
	fmt.Fprintf(f.errw, "xtls-fwd: "+format+"\n", a...)
}

// login logs in and serves XTLS on the session.
func (f *forwarder) login(ctx context.Context, cfg func(*xtls.Config)) error {
	self, _ := f.o.Self()
	id, err := f.o.OpenIdentity(self)
	if err != nil {
		return &cli.Failure{Code: cli.ExitUsage, Err: err}
	}
	c := &xtls.Config{Certificate: id.Cert, Pins: id.Pins, TrustOnFirstUse: true, Logger: f.o.Logger(f.errw), Reattach: cli.NoReattach}
	if cfg != nil {
		cfg(c)
	}
	if f.party, err = cli.Start(ctx, connect, &f.o.Options, c); err != nil {
		return err
	}
	f.say("logged in as %s", f.party.Addr())
	return nil
}

// allowed reports whether peer is on the -allow list.
func (f *forwarder) allowed(peer jid.JID) bool {
	for _, a := range f.o.allow {
		if a.Resourcepart() == "" && a.Equal(peer.Bare()) || a.Equal(peer) {
			return true
		}
	}
	return false
}

// serve accepts tunnels from the allowed accounts and connects each to
// -to, until interrupted.
func (f *forwarder) serve(ctx context.Context) error {
	err := f.login(ctx, func(c *xtls.Config) {
		c.AcceptPeer = func(peer jid.JID) bool {
			if f.allowed(peer) {
				return true
			}
			f.say("refused a tunnel from %s: not in -allow", peer)
			return false
		}
		c.AcceptFailed = func(peer jid.JID, err error) {
			var pin *xtls.PinMismatchError
			if errors.As(err, &pin) {
				f.say("%s", cli.KeyChangeMessage(pin, &f.o.Options))
				return
			}
			f.say("a tunnel from %s failed: %v", peer, err)
		}
	})
	if err != nil {
		return err
	}
	defer f.party.Close()
	ln := f.party.Handler.Listen()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	f.say("serving %s to %s as %s: they run  xtls-fwd local PORT %s", f.o.to, f.list(), f.party.Addr(), f.party.Addr())
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return &cli.Failure{Code: cli.ExitInterrupted, Err: cli.Why(ctx)}
			}
			return err
		}
		conn := c.(*xtls.Conn)
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.forwardTo(ctx, conn)
		}()
	}
}

// list writes the -allow list.
func (f *forwarder) list() string {
	s := ""
	for i, a := range f.o.allow {
		if i > 0 {
			s += ", "
		}
		s += a.String()
	}
	return s
}

// forwardTo connects a tunnel to -to and pipes it.
func (f *forwarder) forwardTo(ctx context.Context, conn *xtls.Conn) {
	st := conn.State()
	f.firstContact(conn)
	d := net.Dialer{Timeout: targetTimeout}
	tcp, err := d.DialContext(ctx, "tcp", f.o.to)
	if err != nil {
		f.say("%s: cannot reach %s: %v", st.Peer, f.o.to, err)
		conn.Tunnel().Abort(cli.AbortCondition, "the target is unreachable")
		conn.Close()
		return
	}
	n := f.open.Add(1)
	f.say("%s → %s (%d open)", st.Peer, f.o.to, n)
	err = pipe(ctx, tcp.(*net.TCPConn), conn)
	n = f.open.Add(-1)
	if err != nil {
		f.say("%s → %s ended: %v (%d open)", st.Peer, f.o.to, err, n)
	} else {
		f.say("%s → %s closed (%d open)", st.Peer, f.o.to, n)
	}
}

// firstContact says that the peer's key was pinned on first contact.
func (f *forwarder) firstContact(conn *xtls.Conn) {
	if st := conn.State(); st.Trust == xtls.TrustFirstUse {
		f.say("first contact with %s: pinned its key %s (compare it with theirs out of band)", st.Peer.Bare(), st.Fingerprint)
	}
}

// local listens on -bind and sends each connection through its own
// tunnel, until interrupted.
func (f *forwarder) local(ctx context.Context) error {
	tl, err := net.Listen("tcp", f.o.bind)
	if err != nil {
		return &cli.Failure{Code: cli.ExitOther, Err: err}
	}
	defer tl.Close()
	if err := f.login(ctx, nil); err != nil {
		return err
	}
	defer f.party.Close()
	stop := context.AfterFunc(ctx, func() { tl.Close() })
	defer stop()
	f.say("listening on %s: each connection goes to %s", tl.Addr(), f.o.peer)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := tl.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return &cli.Failure{Code: cli.ExitInterrupted, Err: cli.Why(ctx)}
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			tcp := c.(*net.TCPConn)
			conn, err := cli.Dial(ctx, f.party.Handler, f.o.peer, &f.o.Options)
			if err != nil {
				fmt.Fprintf(f.errw, "xtls-fwd: connection from %s: %v\n", tcp.RemoteAddr(), err)
				tcp.Close()
				return
			}
			f.firstContact(conn)
			n := f.open.Add(1)
			f.say("%s → %s (%d open)", tcp.RemoteAddr(), f.o.peer, n)
			err = pipe(ctx, tcp, conn)
			f.open.Add(-1)
			if err != nil {
				f.say("%s → %s ended: %v", tcp.RemoteAddr(), f.o.peer, err)
			}
		}()
	}
}

// stdio carries one connection on standard input and output.
func (f *forwarder) stdio(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	if err := f.login(ctx, nil); err != nil {
		return err
	}
	defer f.party.Close()
	conn, err := cli.Dial(ctx, f.party.Handler, f.o.peer, &f.o.Options)
	if err != nil {
		return err
	}
	f.firstContact(conn)
	err = pipe(ctx, stdioConn{stdin, stdout}, conn)
	if err != nil && ctx.Err() != nil {
		return &cli.Failure{Code: cli.ExitInterrupted, Err: cli.Why(ctx)}
	}
	return err
}

// halfCloser is a connection whose directions close one at a time.
type halfCloser interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// stdioConn is standard input and output as one connection.
type stdioConn struct {
	io.Reader
	io.Writer
}

// CloseWrite closes standard output if it can be closed.
func (s stdioConn) CloseWrite() error {
	if c, ok := s.Writer.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Close closes both.
func (s stdioConn) Close() error {
	if c, ok := s.Reader.(io.Closer); ok {
		c.Close()
	}
	return s.CloseWrite()
}

// pipe copies local to the tunnel and back. The end of one direction is
// passed on as a half-close; pipe returns once both directions are done
// (or one failed, or ctx ended: then both are closed), with the tunnel
// closed.
func pipe(ctx context.Context, local halfCloser, conn *xtls.Conn) error {
	errs := make(chan error, 2)
	go func() {
		_, err := io.Copy(conn, local)
		if err == nil {
			err = conn.CloseWrite()
		}
		errs <- err
	}()
	go func() {
		_, err := io.Copy(local, conn)
		if err == nil {
			err = local.CloseWrite()
		}
		errs <- err
	}()
	var first error
	for i := 0; i < 2; i++ {
		select {
		case err := <-errs:
			if err != nil && first == nil {
				first = err
				local.Close()
				conn.Close()
			}
		case <-ctx.Done():
			if first == nil {
				first = cli.Why(ctx)
				conn.Tunnel().Abort(cli.AbortCondition, first.Error())
				local.Close()
				conn.Close()
			}
			i--
			ctx = context.Background()
		}
	}
	local.Close()
	if err := conn.Close(); err != nil && first == nil {
		first = err
	}
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-conn.Tunnel().Done():
	case <-t.C:
	}
	if first != nil {
		return cli.StreamFailure(first, conn.State().Peer)
	}
	return nil
}
