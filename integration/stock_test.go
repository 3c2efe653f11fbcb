package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	mrand "math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/ping"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/integration/harness"
)

// stock holds a Prosody and an ejabberd with the client limits Debian ships
// them with (harness.StockLimits) and their SOCKS5 proxies, started once for
// the tests that need servers as people get them.
var stock struct {
	once     sync.Once
	prosody  *harness.Server
	ejabberd *harness.Server
	err      error
}

func startStock() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Both at once: ejabberd takes a second or two to start.
	done := make(chan error, 1)
	go func() {
		var err error
		stock.ejabberd, err = harness.StartEjabberd(ctx, harness.EjabberdOptions{Limits: harness.StockLimits, Proxy65: true})
		done <- err
	}()
	stock.prosody, stock.err = harness.StartProsody(ctx, harness.ProsodyOptions{Limits: harness.StockLimits, Proxy65: true})
	if err := <-done; stock.err == nil {
		stock.err = err
	}
	if stock.err != nil {
		return
	}
	for _, s := range []*harness.Server{stock.prosody, stock.ejabberd} {
		for _, u := range []string{"alice", "bob"} {
			if stock.err = s.AddUser(ctx, u, password(u)); stock.err != nil {
				return
			}
		}
	}
}

// closeStock stops the stock-limited servers, if they were started.
func closeStock() {
	for _, s := range []*harness.Server{stock.prosody, stock.ejabberd} {
		if s != nil {
			s.Close()
		}
	}
}

// eachStockServer runs f against the stock-limited Prosody and ejabberd in
// parallel: their limits, not the CPU, bound how long the tests take.
func eachStockServer(t *testing.T, f func(t *testing.T, s *harness.Server)) {
	stock.once.Do(startStock)
	require.NoError(t, stock.err, "starting the stock-limited servers")
	for _, s := range []*harness.Server{stock.prosody, stock.ejabberd} {
		t.Run(s.Kind(), func(t *testing.T) {
			t.Parallel()
			f(t, s)
		})
	}
}

// pingPeer sends an XEP-0199 ping from p to the full JID to and fails unless
// to itself answered: unlike ping.Send, it does not take an error answer
// (service-unavailable from the server, say) for success.
func pingPeer(ctx context.Context, p *party, to jid.JID) error {
	return p.s.UnmarshalIQ(ctx, ping.IQ{IQ: stanza.IQ{Type: stanza.GetIQ, To: to}}.TokenReader(), nil)
}

// A file and a chat side by side through servers with the limits Debian
// ships (Prosody's mod_limits at 10 kB/s; ejabberd's 3000 B/s shaper): one
// tunnel moves about ten seconds' worth of the shaper's rate alice -> bob,
// and while it does, a 100-byte echo over a second tunnel and an XEP-0199
// ping on the same sessions complete. Every byte arrives exactly, and no
// data IQ is sent twice: the tunnel must pace itself to the shaper instead
// of timing out on the queue it builds there. No assertion is on time.
func TestTunnelBesideChatStockLimits(t *testing.T) {
	eachStockServer(t, func(t *testing.T, srv *harness.Server) {
		alice := connect(t, srv, "alice", partyOpt{withPing: true})
		bob := connect(t, srv, "bob", partyOpt{withPing: true})
		bulk1, bulk2 := tunnel(t, alice, bob)
		chat1, chat2 := tunnel(t, alice, bob)
		go io.Copy(chat2, chat2) // bob echoes the chat tunnel

		size := int64(10 * srv.C2SRate()) // Prosody 100 kB, ejabberd 30 kB
		want := sha256.New()
		src := io.TeeReader(io.LimitReader(mrand.NewChaCha8([32]byte{7}), size), want)
		wrote := make(chan error, 1)
		go func() {
			_, err := io.Copy(bulk1, src)
			wrote <- err
		}()
		type result struct {
			sum  []byte
			done time.Time
			err  error
		}
		read := make(chan result, 1)
		started := make(chan struct{})
		go func() {
			got := sha256.New()
			_, err := io.CopyN(got, bulk2, 8<<10)
			close(started) // the transfer is under way
			if err == nil {
				_, err = io.CopyN(got, bulk2, size-8<<10)
			}
			read <- result{got.Sum(nil), time.Now(), err}
		}()
		<-started

		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute) // a stuck test fails; nothing is timed
		defer cancel()
		began := time.Now()
		msg := make([]byte, 100)
		rand.Read(msg)
		_, err := chat1.Write(msg)
		require.NoError(t, err)
		echo := make([]byte, len(msg))
		require.NoError(t, chat1.SetReadDeadline(time.Now().Add(3*time.Minute)))
		_, err = io.ReadFull(chat1, echo)
		require.NoError(t, err)
		require.True(t, bytes.Equal(msg, echo), "the echo differs")
		echoed := time.Since(began)
		require.NoError(t, pingPeer(ctx, alice, bob.addr))
		pinged := time.Since(began) - echoed

		require.NoError(t, <-wrote)
		r := <-read
		require.NoError(t, r.err)
		require.Equal(t, want.Sum(nil), r.sum, "SHA-256 of the bulk transfer")
		t.Logf("%s: %d bytes in %v beside a 100-byte echo (%v) and a ping (%v)", srv.Kind(), size,
			r.done.Sub(began).Round(time.Millisecond), echoed.Round(time.Millisecond), pinged.Round(time.Millisecond))

		for _, c := range []net.Conn{bulk1, bulk2, chat1, chat2} {
			c.Close()
		}
		sa, sb := alice.h.TransportStats(), bob.h.TransportStats()
		t.Logf("transport counters: alice %+v, bob %+v", sa, sb)
		require.Zero(t, sa.Retransmits, "alice sent data IQs again: their answers waited too long behind the shaper")
		require.Zero(t, sb.Retransmits, "bob sent data IQs again: their answers waited too long behind the shaper")
	})
}
