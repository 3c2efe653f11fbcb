package xtlstest_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/xml"
	"errors"
	"io"
	mrand "math/rand/v2"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp"
	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/internal/s5b"
	"github.com/xmppxtls/xtls/internal/socks5"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

var proxyJID = jid.MustParse("proxy.example.net")

// proxyNet is a network whose server example.net runs a proxy, with alice
// and bob connected and served. Its cleanup closes the network and checks
// that no goroutine of the proxy is left.
type proxyNet struct {
	n            *xtlstest.Network
	p            *xtlstest.Proxy
	alice, bob   *client
	host         s5b.StreamHost
	closeOnce    sync.Once
	serveResults []error
}

func newProxyNet(t *testing.T, opts ...xtlstest.ProxyOption) *proxyNet {
	t.Helper()
	n := xtlstest.NewNetwork(xtlstest.Proxy65("example.net", opts...))
	pn := &proxyNet{n: n, p: n.Proxy("example.net")}
	require.NotNil(t, pn.p)
	pn.alice = connect(t, n, alice.String(), nil)
	pn.bob = connect(t, n, bob.String(), nil)
	_, port, err := net.SplitHostPort(pn.p.Addr())
	require.NoError(t, err)
	portNum, err := strconv.Atoi(port)
	require.NoError(t, err)
	pn.host = s5b.StreamHost{JID: pn.p.JID(), Host: "127.0.0.1", Port: uint16(portNum)}
	t.Cleanup(func() { pn.close(t) })
	return pn
}

// close closes the network, waits for the clients' Serve, and checks that
// no code of a proxy runs any more.
func (pn *proxyNet) close(t *testing.T) {
	t.Helper()
	pn.closeOnce.Do(func() {
		closeAll(t, pn.n, pn.alice, pn.bob)
		require.Empty(t, proxyGoroutines(), "goroutines of the proxy left after Close")
	})
}

// proxyGoroutines returns the stacks of the goroutines that run code of a
// Proxy. Close waits for all of them: every one starts in Proxy.spawn,
// which has returned from the proxy's code once it is done.
func proxyGoroutines() []string {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var running []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, line := range strings.Split(g, "\n") {
			if strings.Contains(line, "xtlstest.(*Proxy).") && !strings.HasPrefix(line, "created by") &&
				!strings.Contains(line, "xtlstest.(*Proxy).spawn") {
				running = append(running, g)
				break
			}
		}
	}
	return running
}

// bounded returns a context that ends with the test or after 30 s, so that
// a hang fails the test.
func bounded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// dial connects to the proxy for the bytestream sid from alice to bob,
// with a deadline that turns a hang into a failure.
func (pn *proxyNet) dial(t *testing.T, sid string) (net.Conn, error) {
	c, err := s5b.Dial(bounded(t), pn.host, sid, alice, bob)
	if err == nil {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// stream sets up the bytestream sid from alice (the requester) to bob (the
// target) as XEP-0065 says: bob connects, then alice, then alice activates.
func (pn *proxyNet) stream(t *testing.T, sid string) (requester, target net.Conn) {
	t.Helper()
	target, err := pn.dial(t, sid)
	require.NoError(t, err)
	requester, err = pn.dial(t, sid)
	require.NoError(t, err)
	require.NoError(t, s5b.Activate(bounded(t), pn.alice.Session, proxyJID, sid, bob))
	return requester, target
}

func TestProxyDiscovery(t *testing.T) {
	var tests = [...]struct {
		domains []string // with a proxy
		server  string   // asked by alice@example.net for its items
		want    []string // proxies found; nil: the server offers no items
	}{
		0: {domains: []string{"example.net"}, server: "example.net", want: []string{"proxy.example.net"}},
		1: {domains: []string{"example.net", "example.org"}, server: "example.net", want: []string{"proxy.example.net"}},
		2: {domains: []string{"example.org"}, server: "example.net"},
		3: {server: "example.net"},
		4: {domains: []string{"example.net", "example.org"}, server: "example.org", want: []string{"proxy.example.org"}},
	}
	for i, tc := range tests {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			var opts []xtlstest.Option
			for _, d := range tc.domains {
				opts = append(opts, xtlstest.Proxy65(d))
			}
			n := xtlstest.NewNetwork(opts...)
			a := connect(t, n, alice.String(), nil)
			defer closeAll(t, n, a)
			ctx := bounded(t)

			proxies, err := s5b.FindProxies(ctx, a.Session, jid.MustParse(tc.server))
			if tc.want == nil {
				require.ErrorIs(t, err, stanza.Error{Condition: stanza.ServiceUnavailable})
			} else {
				require.NoError(t, err)
				var got []string
				for _, p := range proxies {
					got = append(got, p.String())
				}
				require.Equal(t, tc.want, got)
			}

			// Every proxy answers anyone, as through federation.
			for _, d := range tc.domains {
				p := n.Proxy(d)
				require.NotNil(t, p)
				require.Equal(t, "proxy."+d, p.JID().String())
				info, err := disco.GetInfo(ctx, "", p.JID(), a.Session)
				require.NoError(t, err)
				require.Len(t, info.Identity, 1)
				require.Equal(t, disco.ProxyBytestreams.Category, info.Identity[0].Category)
				require.Equal(t, disco.ProxyBytestreams.Type, info.Identity[0].Type)
				var features []string
				for _, f := range info.Features {
					features = append(features, f.Var)
				}
				require.Contains(t, features, s5b.NS)

				hosts, err := s5b.GetStreamHosts(ctx, a.Session, p.JID())
				require.NoError(t, err)
				require.Len(t, hosts, 1)
				require.True(t, hosts[0].JID.Equal(p.JID()), "streamhost %s", hosts[0].JID)
				require.Equal(t, "127.0.0.1", hosts[0].Host)
				require.Equal(t, p.Addr(), hosts[0].Addr())
			}
			require.Nil(t, n.Proxy("example.com"))
		})
	}
}

// SetFaults with Proxy65 starts a proxy on a running network; a second
// Proxy65 for the same domain keeps the first.
func TestProxySetFaults(t *testing.T) {
	n := xtlstest.NewNetwork()
	a := connect(t, n, alice.String(), nil)
	require.Nil(t, n.Proxy("example.net"))
	n.SetFaults(xtlstest.Proxy65("example.net"))
	p := n.Proxy("example.net")
	require.NotNil(t, p)
	n.SetFaults(xtlstest.Proxy65("example.net"))
	require.Same(t, p, n.Proxy("example.net"))
	proxies, err := s5b.FindProxies(bounded(t), a.Session, alice.Domain())
	require.NoError(t, err)
	require.Len(t, proxies, 1)
	closeAll(t, n, a)
	require.Empty(t, proxyGoroutines())
	n.SetFaults(xtlstest.Proxy65("example.org"))
	require.Nil(t, n.Proxy("example.org"), "a proxy started on a closed network")
}

// The flow of integration/bytestream_test.go against the in-memory proxy:
// turns of 4 KiB both ways, then 4 MiB one way to the end of the stream,
// all exact.
func TestProxyBytestream(t *testing.T) {
	pn := newProxyNet(t)
	ctx := bounded(t)
	proxies, err := s5b.FindProxies(ctx, pn.alice.Session, alice.Domain())
	require.NoError(t, err)
	require.Equal(t, []jid.JID{proxyJID}, proxies)
	hosts, err := s5b.GetStreamHosts(ctx, pn.alice.Session, proxies[0])
	require.NoError(t, err)
	require.Equal(t, []s5b.StreamHost{pn.host}, hosts)

	requester, target := pn.stream(t, "sid-1")

	msg := make([]byte, 4096)
	const turns = 64
	echoed := make(chan error, 1)
	go func() {
		echoed <- func() error {
			buf := make([]byte, len(msg))
			for range turns {
				if _, err := io.ReadFull(target, buf); err != nil {
					return err
				}
				if _, err := target.Write(buf); err != nil {
					return err
				}
			}
			return nil
		}()
	}()
	got := make([]byte, len(msg))
	rng := mrand.NewChaCha8([32]byte{1})
	for i := range turns {
		rng.Read(msg)
		_, err := requester.Write(msg)
		require.NoError(t, err)
		_, err = io.ReadFull(requester, got)
		require.NoError(t, err, "turn %d", i)
		require.True(t, bytes.Equal(msg, got), "turn %d came back changed", i)
	}
	require.NoError(t, <-echoed)

	const n = 4 << 20
	want, sum := sha256.New(), sha256.New()
	wrote := make(chan error, 1)
	go func() {
		_, err := io.Copy(requester, io.TeeReader(io.LimitReader(mrand.NewChaCha8([32]byte{9}), n), want))
		if err == nil {
			err = requester.(*net.TCPConn).CloseWrite()
		}
		wrote <- err
	}()
	read, err := io.Copy(sum, target)
	require.NoError(t, err)
	require.NoError(t, <-wrote)
	require.Equal(t, int64(n), read)
	require.Equal(t, want.Sum(nil), sum.Sum(nil), "SHA-256 of the bytes through the proxy")

	// The half close went through; the target's own close ends the
	// bytestream, and the requester reads its end.
	require.NoError(t, target.Close())
	rest, err := io.ReadAll(requester)
	require.NoError(t, err)
	require.Empty(t, rest)

	pn.close(t)
	st := pn.p.Stats()
	require.Equal(t, xtlstest.ProxyStats{Accepted: 2, Activated: 1, Relayed: 2*turns*4096 + n}, st)
}

// query sends an IQ of type typ with the payload payload (raw XML) to to
// and returns its error.
func query(ctx context.Context, s *xmpp.Session, typ stanza.IQType, to jid.JID, payload string) error {
	resp, err := s.SendIQ(ctx, stanza.IQ{Type: typ, To: to}.Wrap(rawXML(payload)))
	if err != nil {
		return err
	}
	defer resp.Close()
	tok, err := resp.Token()
	if err != nil {
		return err
	}
	_, err = stanza.UnmarshalIQError(resp, tok.(xml.StartElement))
	return err
}

// rawXML returns the tokens of an XML fragment as written, namespaces as
// xmlns attributes, so that re-encoding them writes each once.
func rawXML(s string) xml.TokenReader {
	if s == "" {
		return nil
	}
	return rawTokens{xml.NewDecoder(strings.NewReader(s))}
}

type rawTokens struct{ d *xml.Decoder }

func (r rawTokens) Token() (xml.Token, error) { return r.d.RawToken() }

func TestProxyActivationErrors(t *testing.T) {
	activate := func(sid, target string) string {
		return `<query xmlns='` + s5b.NS + `' sid='` + sid + `'><activate>` + target + `</activate></query>`
	}
	var tests = [...]struct {
		name    string
		connect []string // sids for which bob, then alice, connect (as alice to bob)
		by      string   // who activates: alice by default
		payload string   // of the IQ set
		cond    stanza.Condition
		typ     stanza.ErrorType
	}{
		0:  {name: "nobody connected", payload: activate("s", bob.String()), cond: stanza.ItemNotFound},
		1:  {name: "only the target connected", connect: []string{"s"}, payload: activate("s", bob.String()), cond: stanza.NotAllowed},
		2:  {name: "the requester connected with another sid", connect: []string{"s", "t"}, payload: activate("s", bob.String()), cond: stanza.NotAllowed},
		3:  {name: "another target", connect: []string{"s", "s"}, payload: activate("s", "carol@example.net/c"), cond: stanza.ItemNotFound},
		4:  {name: "activated by someone else", connect: []string{"s", "s"}, by: "mallory", payload: activate("s", bob.String()), cond: stanza.ItemNotFound},
		5:  {name: "activated twice", connect: []string{"s", "s"}, by: "alice twice", payload: activate("s", bob.String()), cond: stanza.Conflict},
		6:  {name: "no sid", payload: `<query xmlns='` + s5b.NS + `'><activate>` + bob.String() + `</activate></query>`, cond: stanza.BadRequest, typ: stanza.Modify},
		7:  {name: "no activate", payload: `<query xmlns='` + s5b.NS + `' sid='s'/>`, cond: stanza.BadRequest, typ: stanza.Modify},
		8:  {name: "a malformed target", payload: activate("s", "@example.net"), cond: stanza.JIDMalformed, typ: stanza.Modify},
		9:  {name: "activate in another namespace", payload: `<query xmlns='` + s5b.NS + `' sid='s'><activate xmlns='urn:example'>` + bob.String() + `</activate></query>`, cond: stanza.BadRequest, typ: stanza.Modify},
		10: {name: "another payload", payload: `<ping xmlns='urn:xmpp:ping'/>`, cond: stanza.ServiceUnavailable},
		11: {name: "no payload", cond: stanza.BadRequest, typ: stanza.Modify},
	}
	for i, tc := range tests {
		t.Run(strconv.Itoa(i)+" "+tc.name, func(t *testing.T) {
			pn := newProxyNet(t)
			ctx := bounded(t)
			for _, sid := range tc.connect {
				_, err := pn.dial(t, sid)
				require.NoError(t, err)
			}
			s := pn.alice.Session
			switch tc.by {
			case "mallory":
				s = connect(t, pn.n, mallory.String(), nil).Session
			case "alice twice":
				require.NoError(t, query(ctx, s, stanza.SetIQ, proxyJID, tc.payload))
			}
			err := query(ctx, s, stanza.SetIQ, proxyJID, tc.payload)
			typ := tc.typ
			if typ == "" {
				typ = stanza.Cancel
			}
			require.ErrorIs(t, err, stanza.Error{Type: typ, Condition: tc.cond})
		})
	}
}

// A requester that follows XEP-0065 gets its error as a stanza.Error, and
// can activate once the target has come.
func TestProxyActivateLate(t *testing.T) {
	pn := newProxyNet(t)
	requester, err := pn.dial(t, "late")
	require.NoError(t, err) // in the target's place: it came first
	err = s5b.Activate(bounded(t), pn.alice.Session, proxyJID, "late", bob)
	require.ErrorIs(t, err, stanza.Error{Condition: stanza.NotAllowed})
	target, err := pn.dial(t, "late")
	require.NoError(t, err)
	require.NoError(t, s5b.Activate(bounded(t), pn.alice.Session, proxyJID, "late", bob))
	requireRelayed(t, requester, target, "ping")
}

// requireRelayed writes msg to from and checks that to reads it.
func requireRelayed(t *testing.T, from, to net.Conn, msg string) {
	t.Helper()
	_, err := from.Write([]byte(msg))
	require.NoError(t, err)
	got := make([]byte, len(msg))
	_, err = io.ReadFull(to, got)
	require.NoError(t, err)
	require.Equal(t, msg, string(got))
}

// isReply reports whether err is a SOCKS5 refusal with code.
func isReply(err error, code byte) bool {
	var re *socks5.ReplyError
	return errors.As(err, &re) && re.Code == code
}
