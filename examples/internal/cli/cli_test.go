package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/xtls"
)

// Flags after the words mean what they mean before them.
func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		words []string
		v     bool
		o     string
	}{
		{[]string{"-v", "send", "a", "b"}, []string{"send", "a", "b"}, true, ""},
		{[]string{"send", "-v", "a", "-o", "x", "b"}, []string{"send", "a", "b"}, true, "x"},
		{[]string{"send", "a", "--", "-v"}, []string{"send", "a", "-v"}, false, ""},
		{[]string{"list"}, []string{"list"}, false, ""},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		v := fs.Bool("v", false, "")
		o := fs.String("o", "", "")
		words, err := ParseArgs(fs, tc.args)
		if err != nil || !slices.Equal(words, tc.words) || *v != tc.v || *o != tc.o {
			t.Errorf("%q: %q v=%v o=%q (%v)", tc.args, words, *v, *o, err)
		}
	}
}

// A profile fills what the command line left empty; a relative file is
// relative to the profile; a missing default profile is no error, a
// missing named one is.
func TestProfile(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(PasswordEnv, "")
	os.WriteFile(filepath.Join(dir, "work.profile"), []byte("# comment\njid = alice@example.net/x\nserver= s.example.net:5223\nca = ca.pem\npassword-command = echo hi\n"), 0o600)
	o := Options{Dir: dir, Profile: "work", Server: "other:1"}
	if err := o.Resolve(); err != nil {
		t.Fatal(err)
	}
	if o.JID != "alice@example.net/x" || o.Server != "other:1" || o.CAFile != filepath.Join(dir, "ca.pem") || o.PasswordCommand != "echo hi" {
		t.Errorf("resolved %+v", o)
	}
	if pw, err := o.Login().password(context.Background()); pw != "hi" || err != nil {
		t.Errorf("password %q, %v", pw, err)
	}
	if !slices.Contains(o.StateFlags(), "work") {
		t.Errorf("state flags %q do not name the profile", o.StateFlags())
	}
	if err := (&Options{Dir: dir}).Resolve(); err != nil {
		t.Errorf("no default profile: %v", err)
	}
	if err := (&Options{Dir: dir, Profile: "none"}).Resolve(); err == nil {
		t.Error("a missing named profile is no error")
	}
	os.WriteFile(filepath.Join(dir, "bad.profile"), []byte("colour = blue\n"), 0o600)
	if err := (&Options{Dir: dir, Profile: "bad"}).Resolve(); err == nil || !strings.Contains(err.Error(), "bad.profile:1") {
		t.Errorf("unknown setting: %v", err)
	}
}

// Logging in to a port that is not XMPP fails within the timeout and
// says what to check: one that accepts and says nothing, one that
// answers as HTTP servers do, one that closes.
func TestLoginNotXMPP(t *testing.T) {
	for _, tc := range []struct {
		name  string
		serve func(net.Conn)
		hint  string
	}{
		{"silent", func(c net.Conn) { io.Copy(io.Discard, c) }, "no XMPP answer within"},
		{"http", func(c net.Conn) {
			c.Read(make([]byte, 512))
			io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			c.Close()
		}, "did not answer as an XMPP server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						tc.serve(c)
					}()
				}
			}()
			const timeout = 500 * time.Millisecond
			start := time.Now()
			_, err = Connect(context.Background(), Login{Server: ln.Addr().String(), JID: "alice@example.net", Password: "x", Timeout: timeout})
			el := time.Since(start)
			var le *LoginError
			if !errors.As(err, &le) || !strings.Contains(err.Error(), tc.hint) {
				t.Fatalf("error %v, want a LoginError saying %q", err, tc.hint)
			}
			if el > timeout+2*time.Second {
				t.Errorf("failed after %v; the timeout is %v", el, timeout)
			}
			if Code(err) != ExitLogin {
				t.Errorf("exit %d", Code(err))
			}
		})
	}
}

// A server whose certificate does not verify gets a hint about -ca.
func TestLoginCAHint(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cert, err := xtls.GenerateCertificate(jid.MustParse("example.net")) // self-signed: no system CA knows it
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var seen []byte
		buf := make([]byte, 4096)
		for !bytes.Contains(seen, []byte("<stream:stream")) || !bytes.Contains(seen, []byte(">")) {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			seen = append(seen, buf[:n]...)
		}
		io.WriteString(c, `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' from='example.net' id='s1' version='1.0'>`+
			`<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>`)
		for !bytes.Contains(seen, []byte("starttls")) {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			seen = append(seen, buf[:n]...)
		}
		io.WriteString(c, `<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`)
		tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}}).Handshake()
	}()
	_, err = Connect(context.Background(), Login{Server: ln.Addr().String(), JID: "alice@example.net", Password: "x", Timeout: 5 * time.Second})
	<-done
	if err == nil || !strings.Contains(err.Error(), "give its PEM file with -ca FILE") || Code(err) != ExitLogin {
		t.Errorf("error %v (exit %d), want the -ca hint", err, Code(err))
	}
}

// A failed Dial gets the exit status its cause deserves; a possible
// downgrade (a pinned peer answered as if it had no XTLS) is a trust
// failure, never "the peer does not speak XTLS".
func TestDialFailureCodes(t *testing.T) {
	peer := jid.MustParse("bob@example.org/b")
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"downgrade", &xtls.DowngradeError{Peer: peer, Err: stanza.Error{Type: stanza.Cancel, Condition: stanza.ServiceUnavailable}}, ExitTrust},
		{"not supported", xtls.ErrNotSupported, ExitPeer},
		{"refused", xtls.ErrRefused, ExitPeer},
		{"offline", xtls.ErrPeerUnavailable, ExitPeer},
		{"untrusted", xtls.ErrUntrusted, ExitTrust},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, Code(DialFailure(fmt.Errorf("dial: %w", tc.err), peer, &Options{})))
		})
	}
}
