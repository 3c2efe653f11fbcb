package s5b_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/internal/s5b"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// The example of XEP-0065's mediated connection, hashed by sha1sum.
func TestDstAddr(t *testing.T) {
	got := s5b.DstAddr("vxf9n471bn46", jid.MustParse("requester@example.com/foo"), jid.MustParse("target@example.org/bar"))
	if want := "98b8d688d0f5d895fd41c5e7309a2e9e33ba32ff"; got != want {
		t.Fatalf("DstAddr = %s, want %s", got, want)
	}
}

var (
	alice   = jid.MustParse("alice@example.net/a")
	server  = jid.MustParse("server@example.net/s") // stands for the server's domain
	proxy   = jid.MustParse("proxy@example.net/p")
	muc     = jid.MustParse("muc@example.net/m")
	gone    = jid.MustParse("gone@example.net/g") // listed, but offline
	mallory = jid.MustParse("mallory@example.net/x")
)

// bounded returns a context that ends with the test or after 10 s, so that
// a lost answer fails the test instead of hanging it.
func bounded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// answer returns an IQ handler that answers with payload (a result), or
// with the stanza error e if payload is nil and e is set.
func answer(payload func(iq stanza.IQ, start *xml.StartElement) xml.TokenReader, e *stanza.Error) mux.IQHandlerFunc {
	return func(iq stanza.IQ, t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		if e != nil {
			_, err := xmlstream.Copy(t, iq.Error(*e))
			return err
		}
		_, err := xmlstream.Copy(t, iq.Result(payload(iq, start)))
		return err
	}
}

// raw parses an XML fragment into tokens as written, namespaces as xmlns
// attributes, so that re-encoding them writes each once.
func raw(s string) xml.TokenReader {
	return rawReader{xml.NewDecoder(bytes.NewBufferString(s))}
}

type rawReader struct{ d *xml.Decoder }

func (r rawReader) Token() (xml.Token, error) { return r.d.RawToken() }

// fakeProxy is the proxy's behaviour in a test: what it announces, whether
// it refuses activation, and the activations it saw.
type fakeProxy struct {
	streamhosts string // the <streamhost/> elements of its answer
	refuse      *stanza.Error

	mu        sync.Mutex
	activated []string // "from sid target"
}

func (p *fakeProxy) handler() xmpp.Handler {
	info := `<query xmlns='http://jabber.org/protocol/disco#info'><identity category='proxy' type='bytestreams' name='SOCKS5'/><feature var='` + s5b.NS + `'/></query>`
	return mux.New(stanza.NSClient,
		mux.IQ(stanza.GetIQ, xml.Name{Space: disco.NSInfo, Local: "query"}, answer(func(stanza.IQ, *xml.StartElement) xml.TokenReader { return raw(info) }, nil)),
		mux.IQ(stanza.GetIQ, xml.Name{Space: s5b.NS, Local: "query"}, answer(func(stanza.IQ, *xml.StartElement) xml.TokenReader {
			return raw(`<query xmlns='` + s5b.NS + `'>` + p.streamhosts + `</query>`)
		}, nil)),
		mux.IQFunc(stanza.SetIQ, xml.Name{Space: s5b.NS, Local: "query"}, func(iq stanza.IQ, t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
			var q struct {
				SID      string `xml:"sid,attr"`
				Activate string `xml:"activate"`
			}
			d := xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), t))
			if err := d.Decode(&q); err != nil {
				return err
			}
			p.mu.Lock()
			p.activated = append(p.activated, fmt.Sprintf("%s %s %s", iq.From, q.SID, q.Activate))
			p.mu.Unlock()
			if p.refuse != nil {
				_, err := xmlstream.Copy(t, iq.Error(*p.refuse))
				return err
			}
			_, err := xmlstream.Copy(t, iq.Result(nil))
			return err
		}),
	)
}

// world connects alice, the server, the proxy, a MUC service and mallory to
// an in-memory network and serves them.
func world(t *testing.T, p *fakeProxy, opts ...xtlstest.Option) *xmpp.Session {
	t.Helper()
	n := xtlstest.NewNetwork(opts...)
	t.Cleanup(func() { n.Close() })
	items := `<query xmlns='http://jabber.org/protocol/disco#items'>` +
		`<item jid='` + muc.String() + `'/><item jid='` + gone.String() + `'/><item jid='` + proxy.String() + `' name='SOCKS5'/></query>`
	mucInfo := `<query xmlns='http://jabber.org/protocol/disco#info'><identity category='conference' type='text'/></query>`
	parties := []struct {
		addr jid.JID
		h    xmpp.Handler
	}{
		{alice, nil},
		{server, mux.New(stanza.NSClient, mux.IQ(stanza.GetIQ, xml.Name{Space: disco.NSItems, Local: "query"},
			answer(func(stanza.IQ, *xml.StartElement) xml.TokenReader { return raw(items) }, nil)))},
		{proxy, p.handler()},
		{muc, mux.New(stanza.NSClient, mux.IQ(stanza.GetIQ, xml.Name{Space: disco.NSInfo, Local: "query"},
			answer(func(stanza.IQ, *xml.StartElement) xml.TokenReader { return raw(mucInfo) }, nil)))},
		{mallory, (&fakeProxy{streamhosts: `<streamhost jid='` + proxy.String() + `' host='203.0.113.9' port='6666'/>`}).handler()},
	}
	var first *xmpp.Session
	for _, party := range parties {
		s, err := n.Session(t.Context(), party.addr)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { s.Serve(party.h); close(done) }()
		t.Cleanup(func() { s.Close(); <-done })
		if first == nil {
			first = s
		}
	}
	return first
}

func TestFindProxies(t *testing.T) {
	s := world(t, &fakeProxy{})
	got, err := s5b.FindProxies(bounded(t), s, server)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got[0].Equal(proxy) {
		t.Fatalf("FindProxies = %v, want [%s] (not the MUC, not the offline item)", got, proxy)
	}
}

func TestGetStreamHosts(t *testing.T) {
	var tests = [...]struct {
		streamhosts string
		want        []s5b.StreamHost
		wantErr     bool
	}{
		0: {streamhosts: `<streamhost jid='proxy@example.net/p' host='127.0.0.1' port='41234'/>`,
			want: []s5b.StreamHost{{JID: proxy, Host: "127.0.0.1", Port: 41234}}},
		1: {streamhosts: `<streamhost jid='proxy@example.net/p' host='proxy.example.net'/>`,
			want: []s5b.StreamHost{{JID: proxy, Host: "proxy.example.net", Port: s5b.DefaultPort}}},
		2: {streamhosts: `<streamhost jid='proxy@example.net/p' port='7777'/><streamhost jid='proxy@example.net/p' host='::1' port='7777'/>`,
			want: []s5b.StreamHost{{JID: proxy, Host: "::1", Port: 7777}}},
		3: {streamhosts: `<streamhost jid='proxy@example.net/p' host='127.0.0.1' port='0'/>`, wantErr: true},
		4: {streamhosts: `<streamhost jid='proxy@example.net/p' host='127.0.0.1' port='65536'/>`, wantErr: true},
		5: {streamhosts: `<streamhost jid='@@' host='127.0.0.1' port='1'/>`, wantErr: true},
		6: {streamhosts: ``, want: nil},
	}
	for i, tc := range tests {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			s := world(t, &fakeProxy{streamhosts: tc.streamhosts})
			got, err := s5b.GetStreamHosts(bounded(t), s, proxy)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error: %v", err, tc.wantErr)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("GetStreamHosts = %v, want %v", got, tc.want)
			}
		})
	}
	if got := (s5b.StreamHost{Host: "::1", Port: 7777}).Addr(); got != "[::1]:7777" {
		t.Errorf("Addr = %s", got)
	}
}

// An answer from someone other than the proxy asked is refused, whatever it
// says: here the network hands alice's query to mallory, who answers it.
func TestAnswerFromAnotherEntity(t *testing.T) {
	toMallory := xtlstest.Intercept(func(s xtlstest.Stanza) (jid.JID, bool) {
		if s.To.Equal(proxy) {
			return mallory, true
		}
		return s.To, true
	})
	s := world(t, &fakeProxy{streamhosts: `<streamhost jid='proxy@example.net/p' host='127.0.0.1' port='1'/>`}, toMallory)
	hosts, err := s5b.GetStreamHosts(bounded(t), s, proxy)
	var wrong *s5b.WrongSenderError
	if !errors.As(err, &wrong) || !wrong.Answered.Equal(mallory) || hosts != nil {
		t.Fatalf("GetStreamHosts answered by mallory: %v, %v", hosts, err)
	}
	if err := s5b.Activate(bounded(t), s, proxy, "sid", gone); !errors.As(err, &wrong) {
		t.Fatalf("Activate answered by mallory: %v", err)
	}
}

func TestActivate(t *testing.T) {
	p := &fakeProxy{}
	s := world(t, p)
	target := jid.MustParse("bob@example.org/b")
	if err := s5b.Activate(bounded(t), s, proxy, "vxf9n471bn46", target); err != nil {
		t.Fatal(err)
	}
	want := []string{alice.String() + " vxf9n471bn46 " + target.String()}
	if fmt.Sprint(p.activated) != fmt.Sprint(want) {
		t.Fatalf("the proxy saw %q, want %q", p.activated, want)
	}

	p.refuse = &stanza.Error{Type: stanza.Cancel, Condition: stanza.NotAllowed}
	err := s5b.Activate(bounded(t), s, proxy, "other", target)
	if !errors.Is(err, stanza.Error{Condition: stanza.NotAllowed}) {
		t.Fatalf("a refused activation: %v", err)
	}
}

// Dial connects to the streamhost and asks for DstAddr, port 0.
func TestDial(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	requester, target := jid.MustParse("requester@example.com/foo"), jid.MustParse("target@example.org/bar")
	dst := s5b.DstAddr("vxf9n471bn46", requester, target)
	got := make(chan []byte, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			close(got)
			return
		}
		defer conn.Close()
		io.ReadFull(conn, make([]byte, 3))
		conn.Write([]byte{5, 0})
		req := make([]byte, 7+len(dst))
		io.ReadFull(conn, req)
		got <- req
		conn.Write(append(append([]byte{5, 0, 0, 3, byte(len(dst))}, dst...), 0, 0))
	}()
	port := l.Addr().(*net.TCPAddr).Port
	conn, err := s5b.Dial(bounded(t), s5b.StreamHost{JID: proxy, Host: "127.0.0.1", Port: uint16(port)}, "vxf9n471bn46", requester, target)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	want := append(append([]byte{5, 1, 0, 3, 40}, dst...), 0, 0)
	if req := <-got; !bytes.Equal(req, want) {
		t.Fatalf("request %q, want %q", req, want)
	}

	l.Close()
	if _, err := s5b.Dial(bounded(t), s5b.StreamHost{JID: proxy, Host: "127.0.0.1", Port: uint16(port)}, "x", requester, target); err == nil {
		t.Fatal("Dial to a closed listener succeeded")
	}
}

// A context that is done already sends nothing: mellium would turn it into
// a write deadline in the past that may fail the session's next write
// (internal/sendctx).
func TestDoneContextSendsNothing(t *testing.T) {
	var mu sync.Mutex
	var sent []string
	s := world(t, &fakeProxy{}, xtlstest.Trace(func(st xtlstest.Stanza) {
		if st.From.Equal(alice) {
			mu.Lock()
			sent = append(sent, string(st.Raw))
			mu.Unlock()
		}
	}))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s5b.FindProxies(ctx, s, server); !errors.Is(err, context.Canceled) {
		t.Errorf("FindProxies: %v", err)
	}
	if _, err := s5b.GetStreamHosts(ctx, s, proxy); !errors.Is(err, context.Canceled) {
		t.Errorf("GetStreamHosts: %v", err)
	}
	if err := s5b.Activate(ctx, s, proxy, "sid", gone); !errors.Is(err, context.Canceled) {
		t.Errorf("Activate: %v", err)
	}
	// The session still works, and what it sends next is the first thing
	// it sent at all.
	if _, err := s5b.GetStreamHosts(bounded(t), s, proxy); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sent) != 1 {
		t.Fatalf("alice sent %d stanzas, want only the last query: %q", len(sent), sent)
	}
}
