package main

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/examples/internal/cli"
	"github.com/xmppxtls/xtls/xtls"
)

// dialTimeout bounds opening the tunnel, the TLS handshake and pairing.
const dialTimeout = 60 * time.Second

// quitTimeout bounds how long /quit waits for the peer to close its end of
// the inner stream before cutting the tunnel.
const quitTimeout = 10 * time.Second

// failGrace is how long a listener whose handshake with the peer failed
// stays up before it exits: xtls closes the failed tunnel on its own
// goroutine after reporting the failure, and closing the Handler meanwhile
// would abort the tunnel, so that the peer might not get our alert or
// pairing failure and could not say why the chat did not start.
const failGrace = time.Second

// chatter is one run of the chat: what it prints to, and its state.
type chatter struct {
	o     *options
	out   io.Writer // the chat: status, prompts, messages
	errw  io.Writer // warnings and errors
	lines <-chan string
	id    *cli.Identity
	pins  *cli.ConfirmPins
	party *cli.Party
	// failed receives the handshakes of tunnels peers opened that failed.
	failed <-chan cli.Failed
}

// say prints a status line of the chat.
func (c *chatter) say(format string, a ...any) {
	fmt.Fprintf(c.out, "*** "+format+"\n", a...)
}

// fail prints an error and returns code.
func (c *chatter) fail(code int, format string, a ...any) int {
	fmt.Fprintf(c.errw, "xtls-chat: "+format+"\n", a...)
	return code
}

// chat runs one chat as the options say.
func chat(ctx context.Context, connect cli.ConnectFunc, o *options, stdin io.Reader, stdout, stderr io.Writer) int {
	console := cli.OpenConsole(stdin, stdout, "> ")
	defer console.Close()
	c := &chatter{o: o, out: console.Out, errw: cli.SyncWriter(stderr),
		lines: console.Lines}
	failed, acceptFailed := cli.Failures()
	c.failed = failed

	id, err := o.OpenIdentity(o.self)
	if err != nil {
		if o.CertFile != "" {
			return c.fail(exitUsage, "-cert: %v", err)
		}
		return c.fail(exitOther, "%v", err)
	}
	c.id, c.pins = id, &cli.ConfirmPins{PinStore: id.Pins}
	pairCode := o.pair
	if pairCode == "new" {
		pairCode = xtls.NewPairingCode()
	}
	cfg := &xtls.Config{
		Certificate:     id.Cert,
		Pins:            c.pins,
		TrustOnFirstUse: o.pair == "",
		AcceptKeyChange: c.keyChanged,
		Logger:          o.Logger(c.errw),
		// A tunnel the peer opened whose handshake or pairing failed never
		// reaches Accept; AcceptFailed says why.
		AcceptFailed: acceptFailed,
	}
	if o.listen && pairCode != "" {
		cfg.PairingCode = func(jid.JID) ([]byte, bool) { return []byte(pairCode), true }
	}

	s, err := connect(ctx, o.Login())
	if err != nil {
		if ctx.Err() != nil {
			return c.fail(exitInterrupted, "%v", cli.Why(ctx))
		}
		return c.fail(exitLogin, "%v", err)
	}
	// A lost connection is logged in again, and the chat goes on.
	c.party = cli.ServeReconnecting(ctx, s, cfg, cli.Reconnect{Connect: connect, Login: o.Login(),
		Status: func(msg string) { c.say("%s", msg) }})
	defer c.party.Close()
	c.say("logged in as %s", c.party.Addr())
	if id.Created {
		c.say("made a key for %s, kept in %s", o.self.Bare(), id.CertFile)
	}
	c.say("your key:  %s", id.Fingerprint())

	var conn *xtls.Conn
	// pctx also ends if the connection is lost for good.
	pctx, cancel := c.party.Context(ctx)
	defer cancel()
	if o.listen {
		if o.pair == "new" {
			c.say("pairing code: %s", pairCode)
			c.say("read it to the other person, who starts: xtls-chat -jid THEIR_JID -pair '%s' dial %s", pairCode, c.party.Addr())
		}
		conn, err = c.accept(pctx)
	} else {
		conn, err = c.dial(pctx)
	}
	if perr := c.party.Err(); err != nil && perr != nil {
		err = perr
	}
	if err != nil {
		return c.fail(cli.Code(err), "%v", err)
	}
	c.party.Watch(conn)
	st := conn.State()
	c.say("connected to %s: %s, %s, key exchange %s", st.Peer, st.VersionName(), st.CipherSuiteName(), st.CurveID)
	code, ok := c.trust(ctx, conn, st)
	if !ok {
		conn.Close()
		return code
	}
	inner, err := xtls.NewSession(ctx, conn)
	if err != nil {
		if ctx.Err() != nil {
			return c.fail(exitInterrupted, "%v", cli.Why(ctx))
		}
		// With TLS 1.3 the dialer learns only now that the listener
		// rejected its certificate, and not always why.
		return c.fail(exitTrust, "%s hung up before the chat started (%v): it did not accept our key (it has another key of ours pinned, "+
			"or its user did not confirm ours), or it quit", st.Peer.Bare(), err)
	}
	code = c.converse(ctx, inner, st.Peer)
	// The inner session has closed the TLS connection and our direction
	// of the tunnel; closing the Handler before the peer's direction is
	// closed too would abort the tunnel under the peer's feet.
	cli.AwaitTunnel(conn, tunnelCloseTimeout)
	return code
}

// tunnelCloseTimeout bounds the wait, at the end, for the peer's close of
// the tunnel. It is short: when both ends close the TLS connection at the
// same moment, as they do at the end of a chat, the peer's close sometimes
// never comes (its close_notify is refused, and its tunnel fails instead
// of closing), and the tunnel would linger for minutes.
const tunnelCloseTimeout = time.Second

// accept waits for the peer's tunnel. A peer whose handshake fails is
// reported; a changed key that we refused, or a failed pairing, ends the
// wait.
func (c *chatter) accept(ctx context.Context) (*xtls.Conn, error) {
	ln := c.party.Handler.Listen()
	defer ln.Close() // one chat per run: later tunnels are refused
	c.say("waiting for a chat: the other side runs  xtls-chat -jid THEIR_JID dial %s", c.party.Addr())
	wrong := 0 // wrong pairing codes
	return cli.Accept(ctx, ln, c.failed, failGrace, func(f cli.Failed) error {
		var pin *xtls.PinMismatchError
		var pair *xtls.PairingError
		switch {
		case errors.As(f.Err, &pin):
			return cli.Fail(exitTrust, "refused the changed key of %s (see above for the commands that accept it)", pin.Peer.Bare())
		case errors.As(f.Err, &pair) && pair.Reason == xtls.PairingWrongCode && wrong < cli.PairingTries-1:
			// The other side may try again, until the code is used up.
			wrong++
			c.say("%s; %s may try again (%d more)", cli.PairingMessage(pair), pair.Peer.Bare(), cli.PairingTries-wrong)
		case errors.As(f.Err, &pair) && pair.Reason == xtls.PairingWrongCode:
			return cli.Fail(exitTrust, "pairing with %s failed: wrong code %d times: the code is used up; nothing was pinned", pair.Peer.Bare(), cli.PairingTries)
		case errors.As(f.Err, &pair):
			return cli.Fail(exitTrust, "%s", cli.PairingMessage(pair))
		case cli.RefusedOurKey(f.Err):
			c.say("a call from %s failed: it refused our key (if it has another key of ours pinned, its user must accept ours: "+
				"xtls-pins accept %s '%s', or pair); still waiting", f.Peer, c.o.self.Bare(), c.id.Fingerprint())
		default:
			c.say("a call from %s failed (%v); still waiting", f.Peer, f.Err)
		}
		return nil
	})
}

// dial opens the tunnel to the peer.
func (c *chatter) dial(ctx context.Context) (*xtls.Conn, error) {
	var opts []xtls.DialOption
	if c.o.pair != "" {
		opts = append(opts, xtls.WithPairingCode(c.o.pair))
	}
	c.say("calling %s", c.o.peer)
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	conn, err := c.party.Handler.Dial(dctx, c.o.peer, opts...)
	if err == nil {
		return conn, nil
	}
	bare := c.o.peer.Bare()
	var (
		pin  *xtls.PinMismatchError
		pair *xtls.PairingError
	)
	switch {
	case ctx.Err() != nil:
		return nil, &cli.Failure{Code: exitInterrupted, Err: cli.Why(ctx)}
	case errors.As(err, &pin):
		// keyChanged has shown the warning.
		return nil, cli.Fail(exitTrust, "refused the changed key of %s (see above for the commands that accept it)", bare)
	case errors.As(err, &pair):
		return nil, cli.Fail(exitTrust, "%s", cli.PairingMessage(pair))
	case errors.Is(err, xtls.ErrDowngrade):
		return nil, &cli.Failure{Code: exitTrust, Err: err} // it says not to fall back
	case errors.Is(err, xtls.ErrRefused):
		return nil, cli.Fail(exitPeer, "%s refused the chat: is xtls-chat listening there, and not already in a chat? (%v)", c.o.peer, err)
	case errors.Is(err, xtls.ErrPeerUnavailable):
		return nil, cli.Fail(exitPeer, "%s is not online (is the full JID right, resource included?)", c.o.peer)
	case errors.Is(err, xtls.ErrNotSupported):
		return nil, cli.Fail(exitPeer, "%s does not speak XTLS", c.o.peer)
	case cli.RefusedOurKey(err):
		return nil, cli.Fail(exitTrust, "%s refused our key (%v): if it has another key of ours pinned, its user must accept ours: "+
			"xtls-pins accept %s '%s', or pair again", bare, err, c.o.self.Bare(), c.id.Fingerprint())
	}
	return nil, &cli.Failure{Code: exitTrust, Err: err}
}

// keyChanged is Config.AcceptKeyChange: it shows the loud warning, with
// the commands that accept the new key, and refuses it (pairing, if a
// code is in play, decides on its own).
func (c *chatter) keyChanged(e *xtls.PinMismatchError) bool {
	var b strings.Builder
	for _, line := range strings.Split(cli.KeyChangeMessage(e, &c.o.Options), "\n") {
		fmt.Fprintf(&b, "!!! %s\n", line)
	}
	if c.o.pair != "" {
		fmt.Fprintf(&b, "!!! Pairing decides: the new key is pinned only if both sides used the same code.\n")
	}
	io.WriteString(c.errw, b.String())
	return false
}

// trust tells how the peer came to be trusted and, on first contact, asks
// the user to compare the fingerprints. It reports whether to go on, and
// if not the exit status.
func (c *chatter) trust(ctx context.Context, conn *xtls.Conn, st xtls.State) (int, bool) {
	bare := st.Peer.Bare()
	switch st.Trust {
	case xtls.TrustFirstUse:
		c.say("first contact with %s: compare the keys out of band (phone, in person; not in this chat)", bare)
		c.say("%s's key: %s", bare, st.Fingerprint)
		c.say("your key:  %s  (what %s must see)", c.id.Fingerprint(), bare)
		c.say("type yes if %s read you the same key; anything else hangs up", bare)
		var answer string
		var ok bool
		select {
		case answer, ok = <-c.lines:
		case <-ctx.Done():
		}
		if !ok || !strings.EqualFold(strings.TrimSpace(answer), "yes") {
			c.pins.Discard(bare)
			if ctx.Err() != nil {
				return c.fail(exitInterrupted, "%v; nothing pinned", cli.Why(ctx)), false
			}
			return c.fail(exitTrust, "%s's key not confirmed: hung up, nothing pinned", bare), false
		}
		if err := c.pins.Confirm(bare); err != nil {
			return c.fail(exitOther, "pinning %s's key: %v", bare, err), false
		}
		c.say("pinned %s's key in %s: next time no question is asked", bare, c.id.PinFile)
	case xtls.TrustPaired:
		if err := c.pins.Confirm(bare); err != nil {
			return c.fail(exitOther, "pinning %s's key: %v", bare, err), false
		}
		c.say("paired with %s: both used the same code; its key is pinned: %s", bare, st.Pinned)
	case xtls.TrustPinned:
		c.say("%s's key is the one pinned in %s: %s", bare, c.id.PinFile, st.Fingerprint)
	default:
		c.say("%s trusted (%s): %s", bare, st.Trust, st.Fingerprint)
	}
	return 0, true
}

// converse runs the chat on the inner session until one side leaves.
func (c *chatter) converse(ctx context.Context, inner *xmpp.Session, peer jid.JID) int {
	bare := peer.Bare()
	served := make(chan error, 1)
	go func() {
		served <- inner.Serve(mux.New(stanza.NSClient,
			mux.MessageFunc(stanza.ChatMessage, xml.Name{Local: "body"}, func(_ stanza.Message, t xmlstream.TokenReadEncoder) error {
				printMessage(c.out, bare.String(), bodyText(t))
				return nil
			})))
	}()
	c.say("chat with %s started: type a line and Enter to send it, /quit to leave", peer)
	quit := func() int {
		inner.Close()
		t := time.NewTimer(quitTimeout)
		defer t.Stop()
		select {
		case <-served:
		case <-t.C:
			c.party.Handler.Close() // the peer does not answer: cut the tunnel
			<-served
		}
		c.say("you left the chat")
		return exitOK
	}
	for {
		select {
		case line, ok := <-c.lines:
			switch {
			case !ok, line == "/quit":
				return quit()
			case strings.TrimSpace(line) == "":
				continue
			case strings.HasPrefix(line, "//"):
				line = line[1:]
			case strings.HasPrefix(line, "/"):
				c.say("unknown command %s: /quit leaves; start a line with // to send it as it is", strings.Fields(line)[0])
				continue
			}
			if err := inner.Send(context.Background(), chatMessage(peer, line)); err != nil {
				inner.Close()
				<-served
				return c.fail(exitLost, "sending to %s: %v", bare, err)
			}
		case err := <-served:
			if perr := c.party.Err(); perr != nil {
				return c.fail(cli.Code(perr), "%v", perr)
			}
			if err != nil {
				return c.fail(exitLost, "the chat with %s broke off: %v", bare, err)
			}
			c.say("%s left the chat", bare)
			return exitOK
		case <-ctx.Done():
			quit()
			return c.fail(exitInterrupted, "%v", cli.Why(ctx))
		}
	}
}

// chatMessage is a chat message to peer with text as its body.
func chatMessage(peer jid.JID, text string) xml.TokenReader {
	return stanza.Message{To: peer, Type: stanza.ChatMessage}.Wrap(
		xmlstream.Wrap(xmlstream.Token(xml.CharData(text)), xml.StartElement{Name: xml.Name{Local: "body"}}))
}

// bodyText returns the text of the first body element that r holds.
func bodyText(r xml.TokenReader) string {
	var b strings.Builder
	depth := 0 // inside the body
	for {
		tok, err := r.Token()
		if err != nil {
			return b.String()
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if depth > 0 || tok.Name.Local == "body" {
				depth++
			}
		case xml.EndElement:
			if depth > 0 {
				if depth--; depth == 0 {
					return b.String()
				}
			}
		case xml.CharData:
			if depth > 0 {
				b.Write(tok)
			}
		}
	}
}

// printMessage shows a message of from, a line at a time, each after
// "from> ". Control characters, which could drive the terminal, and
// bidirectional overrides, which could disguise the text, are shown as �.
func printMessage(w io.Writer, from, text string) {
	var b strings.Builder
	for _, line := range strings.Split(text, "\n") {
		b.WriteString(from)
		b.WriteString("> ")
		b.WriteString(strings.Map(func(r rune) rune {
			if r != '\t' && (unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r)) {
				return unicode.ReplacementChar
			}
			return r
		}, line))
		b.WriteByte('\n')
	}
	io.WriteString(w, b.String())
}
