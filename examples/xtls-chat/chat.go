package main

import (
	"bufio"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
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
	pins  *confirmPins
	party *cli.Party
	// failed receives the handshakes of tunnels peers opened that failed.
	failed chan failure
}

// failure is a handshake that failed on the listening side.
type failure struct {
	peer jid.JID
	err  error
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
func chat(ctx context.Context, connect connectFunc, o *options, stdin io.Reader, stdout, stderr io.Writer) int {
	done := make(chan struct{})
	defer close(done)
	c := &chatter{o: o, out: cli.SyncWriter(stdout), errw: cli.SyncWriter(stderr),
		lines: readLines(stdin, done), failed: make(chan failure, 16)}

	id, err := cli.OpenIdentity(o.dir, o.self, o.certFile)
	if err != nil {
		if o.certFile != "" {
			return c.fail(exitUsage, "-cert: %v", err)
		}
		return c.fail(exitOther, "%v", err)
	}
	c.id, c.pins = id, &confirmPins{PinStore: id.Pins}
	pairCode := o.pair
	if pairCode == "new" {
		pairCode = xtls.NewPairingCode()
	}
	cfg := &xtls.Config{
		Certificate:     id.Cert,
		Pins:            c.pins,
		TrustOnFirstUse: o.pair == "",
		AcceptKeyChange: c.keyChanged,
		// A tunnel the peer opened whose handshake or pairing failed never
		// reaches Accept; AcceptFailed says why.
		AcceptFailed: func(peer jid.JID, err error) {
			select {
			case c.failed <- failure{peer, err}:
			default:
			}
		},
	}
	if o.verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(c.errw, nil))
	}
	if o.listen && pairCode != "" {
		cfg.PairingCode = func(jid.JID) ([]byte, bool) { return []byte(pairCode), true }
	}

	s, err := connect(ctx, o.login)
	if err != nil {
		return c.fail(exitLogin, "%v", err)
	}
	c.party = cli.Serve(s, cfg)
	defer c.party.Close()
	c.say("logged in as %s", c.party.Addr())
	if id.Created {
		c.say("made a key for %s, kept in %s", o.self.Bare(), id.CertFile)
	}
	c.say("your key:  %s", id.Fingerprint())

	var conn *xtls.Conn
	if o.listen {
		if o.pair == "new" {
			c.say("pairing code: %s", pairCode)
			c.say("read it to the other person, who starts: xtls-chat -jid THEIR_JID -pair '%s' dial %s", pairCode, c.party.Addr())
		}
		conn, err = c.accept(ctx)
	} else {
		conn, err = c.dial(ctx)
	}
	if err != nil {
		var ex exitError
		if errors.As(err, &ex) {
			return c.fail(ex.code, "%v", ex.err)
		}
		return c.fail(exitOther, "%v", err)
	}
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
			return c.fail(exitOther, "interrupted")
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
	awaitTunnel(conn, tunnelCloseTimeout)
	return code
}

// tunnelCloseTimeout bounds the wait, at the end, for the peer's close of
// the tunnel. It is short: when both ends close the TLS connection at the
// same moment, as they do at the end of a chat, the peer's close sometimes
// never comes (its close_notify is refused, and its tunnel fails instead
// of closing), and the tunnel would linger for minutes.
const tunnelCloseTimeout = time.Second

// awaitTunnel waits, at most d, until the tunnel under conn is gone: both
// directions closed, or failed.
func awaitTunnel(conn *xtls.Conn, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-conn.Tunnel().Done():
	case <-t.C:
	}
}

// exitError is an error that decides the exit status.
type exitError struct {
	code int
	err  error
}

// Error implements error.
func (e exitError) Error() string { return e.err.Error() }

// accept waits for the peer's tunnel. A peer whose handshake fails is
// reported; a changed key that we refused, or a failed pairing, ends the
// wait.
func (c *chatter) accept(ctx context.Context) (*xtls.Conn, error) {
	ln := c.party.Handler.Listen()
	defer ln.Close() // one chat per run: later tunnels are refused
	c.say("waiting for a chat: the other side runs  xtls-chat -jid THEIR_JID dial %s", c.party.Addr())
	type accepted struct {
		conn net.Conn
		err  error
	}
	got := make(chan accepted, 1)
	go func() {
		conn, err := ln.Accept()
		got <- accepted{conn, err}
	}()
	stop := func() {
		ln.Close()
		if a := <-got; a.conn != nil {
			a.conn.Close()
		}
	}
	// giveUp stops and lingers a moment (see failGrace).
	giveUp := func() {
		stop()
		t := time.NewTimer(failGrace)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	for {
		select {
		case a := <-got:
			if a.err != nil {
				return nil, a.err
			}
			return a.conn.(*xtls.Conn), nil
		case f := <-c.failed:
			var pin *xtls.PinMismatchError
			var pair *xtls.PairingError
			switch {
			case errors.As(f.err, &pin):
				giveUp()
				return nil, exitError{exitTrust, fmt.Errorf("refused the changed key of %s; to accept it, start again with -accept-new-key", pin.Peer.Bare())}
			case errors.As(f.err, &pair):
				giveUp()
				return nil, exitError{exitTrust, errors.New(pairingMessage(pair))}
			case refusedOurKey(f.err):
				c.say("a call from %s failed: it refused our key (if it has another key of ours pinned, it must accept this one "+
					"with -accept-new-key, or pair); still waiting", f.peer)
			default:
				c.say("a call from %s failed (%v); still waiting", f.peer, f.err)
			}
		case <-ctx.Done():
			stop()
			return nil, exitError{exitOther, errors.New("interrupted")}
		}
	}
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
		return nil, exitError{exitOther, errors.New("interrupted")}
	case errors.As(err, &pin):
		// keyChanged has shown the warning.
		return nil, exitError{exitTrust, fmt.Errorf("refused the changed key of %s; to accept it, start again with -accept-new-key", bare)}
	case errors.As(err, &pair):
		return nil, exitError{exitTrust, errors.New(pairingMessage(pair))}
	case errors.Is(err, xtls.ErrDowngrade):
		return nil, exitError{exitTrust, err} // it says not to fall back
	case errors.Is(err, xtls.ErrRefused):
		return nil, exitError{exitPeer, fmt.Errorf("%s refused the chat: is xtls-chat listening there, and not already in a chat? (%v)", c.o.peer, err)}
	case errors.Is(err, xtls.ErrPeerUnavailable):
		return nil, exitError{exitPeer, fmt.Errorf("%s is not online (is the full JID right, resource included?)", c.o.peer)}
	case errors.Is(err, xtls.ErrNotSupported):
		return nil, exitError{exitPeer, fmt.Errorf("%s does not speak XTLS", c.o.peer)}
	case refusedOurKey(err):
		return nil, exitError{exitTrust, fmt.Errorf("%s refused our key (%v): if it has another key of ours pinned, it must accept this one (-accept-new-key) or pair again", bare, err)}
	}
	return nil, exitError{exitTrust, err}
}

// keyChanged is Config.AcceptKeyChange: it shows the loud warning and
// accepts the key only with -accept-new-key.
func (c *chatter) keyChanged(e *xtls.PinMismatchError) bool {
	bare := e.Peer.Bare()
	var b strings.Builder
	fmt.Fprintf(&b, "!!! ==================================================================\n")
	fmt.Fprintf(&b, "!!! WARNING: THE KEY OF %s HAS CHANGED\n", bare)
	fmt.Fprintf(&b, "!!! ==================================================================\n")
	fmt.Fprintf(&b, "!!! The key it presents is not the one pinned in %s:\n", c.id.PinFile)
	for _, fp := range e.Pinned {
		fmt.Fprintf(&b, "!!!   pinned:    %s\n", fp)
	}
	fmt.Fprintf(&b, "!!!   presented: %s\n", e.Presented)
	fmt.Fprintf(&b, "!!! Either %s made a new key (new device, reinstall), or someone\n", bare)
	fmt.Fprintf(&b, "!!! is intercepting the chat. Ask them, out of band, to read you their key.\n")
	switch {
	case c.o.acceptNewKey:
		fmt.Fprintf(&b, "!!! -accept-new-key was given: the new key replaces the pinned one.\n")
	case c.o.pair != "":
		fmt.Fprintf(&b, "!!! Pairing decides: the new key is pinned only if both sides used the same code.\n")
	default:
		fmt.Fprintf(&b, "!!! Refusing to continue. If they confirm the new key, start again with -accept-new-key.\n")
	}
	io.WriteString(c.errw, b.String())
	return c.o.acceptNewKey
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
			c.pins.discard(bare)
			if ctx.Err() != nil {
				return c.fail(exitOther, "interrupted; nothing pinned"), false
			}
			return c.fail(exitTrust, "%s's key not confirmed: hung up, nothing pinned", bare), false
		}
		if err := c.pins.confirm(bare); err != nil {
			return c.fail(exitOther, "pinning %s's key: %v", bare, err), false
		}
		c.say("pinned %s's key in %s: next time no question is asked", bare, c.id.PinFile)
	case xtls.TrustPaired:
		if err := c.pins.confirm(bare); err != nil {
			return c.fail(exitOther, "pinning %s's key: %v", bare, err), false
		}
		c.say("paired with %s: both used the same code; its key is pinned: %s", bare, st.Pinned)
	case xtls.TrustPinned:
		c.say("%s's key is the one pinned in %s: %s", bare, c.id.PinFile, st.Fingerprint)
	case xtls.TrustApplication:
		c.say("%s's new key replaces the pinned one (-accept-new-key): %s", bare, st.Fingerprint)
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
			if err != nil {
				return c.fail(exitLost, "the chat with %s broke off: %v", bare, err)
			}
			c.say("%s left the chat", bare)
			return exitOK
		case <-ctx.Done():
			quit()
			return c.fail(exitOther, "interrupted")
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

// readLines hands out the lines of r, without their line ends, until r
// ends (the channel is then closed) or done is closed.
func readLines(r io.Reader, done <-chan struct{}) <-chan string {
	ch := make(chan string)
	go func() {
		defer close(ch)
		br := bufio.NewReader(r)
		for {
			line, err := br.ReadString('\n')
			if err == nil || line != "" {
				select {
				case ch <- strings.TrimRight(line, "\r\n"):
				case <-done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return ch
}

// refusedOurKey reports whether err is the TLS alert of a peer that
// rejected our certificate.
func refusedOurKey(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error" && strings.Contains(op.Err.Error(), "bad certificate")
}

// pairingMessage says in words why pairing failed.
func pairingMessage(e *xtls.PairingError) string {
	bare := e.Peer.Bare()
	switch e.Reason {
	case xtls.PairingWrongCode:
		return fmt.Sprintf("pairing with %s failed: wrong code, the two sides used different codes; nothing was pinned", bare)
	case xtls.PairingCodeDead:
		return fmt.Sprintf("pairing with %s failed: the code is used up (it failed three times); make a new one", bare)
	case xtls.PairingNoCode:
		if e.Remote {
			return fmt.Sprintf("%s has no pairing code for us: it must be started with -pair", bare)
		}
		return fmt.Sprintf("%s wants to pair, and we have no code: start with -pair", bare)
	case xtls.PairingRequired:
		return fmt.Sprintf("%s is not pinned and the listener wants pairing: dial with -pair CODE", bare)
	}
	return e.Error()
}

// confirmPins is the pin file, except that a key pinned on first use or by
// pairing waits in memory until the program confirms it (the user said
// yes, or pairing succeeded), so that a key the user did not confirm never
// reaches the file. Replacing pins (an accepted key change) is written at
// once.
type confirmPins struct {
	xtls.PinStore
	mu      sync.Mutex
	pending map[string]xtls.Fingerprint // bare JID -> key
}

// AddPin implements xtls.PinStore: it holds fp until confirm.
func (p *confirmPins) AddPin(bare jid.JID, fp xtls.Fingerprint) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pending == nil {
		p.pending = make(map[string]xtls.Fingerprint)
	}
	p.pending[bare.Bare().String()] = fp
	return nil
}

// confirm writes the key held for bare to the pin file.
func (p *confirmPins) confirm(bare jid.JID) error {
	p.mu.Lock()
	fp, ok := p.pending[bare.String()]
	delete(p.pending, bare.String())
	p.mu.Unlock()
	if !ok {
		return nil
	}
	return p.PinStore.AddPin(bare, fp)
}

// discard forgets the key held for bare.
func (p *confirmPins) discard(bare jid.JID) {
	p.mu.Lock()
	delete(p.pending, bare.String())
	p.mu.Unlock()
}
