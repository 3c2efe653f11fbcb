package transport

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/stanza"

	xstanza "github.com/xmppxtls/xtls/stanza"
)

const (
	aliceJID = "alice@example.net/a"
	bobJID   = "bob@example.net/b"
	sid      = "s1"
)

// responder returns an Endpoint for alice with a tunnel that bob started
// (bob announced block-size 4096 and a window of 16384).
func responder(t *testing.T, cfg *Config) (*fakeSession, *Endpoint, *Conn) {
	t.Helper()
	f, e := newFakeEndpoint(cfg)
	var got *Conn
	e.SetAcceptFunc(func(c *Conn) error { got = c; return nil })
	resp := deliver(t, e, stanza.SetIQ, bobJID, encodeElem(xstanza.Start{SID: sid, BlockSize: 4096, Window: 16384}))
	require.Contains(t, resp, `<proceed xmlns="urn:xmpp:xtls:0" sid="s1"`, resp)
	require.NotNil(t, got)
	t.Cleanup(func() { e.Close() })
	return f, e, got
}

func data(seq int, payload string) string {
	return encodeElem(xstanza.Data{SID: sid, Seq: uint16(seq), Payload: []byte(payload)})
}

func readAll(t *testing.T, c *Conn, n int) string {
	t.Helper()
	buf := make([]byte, n)
	_, err := io.ReadFull(c, buf)
	require.NoError(t, err)
	return string(buf)
}

func TestReceiverDeliversInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, e, c := responder(t, &Config{Window: 65536})
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(0, "ab"))))
		// 2 and 3 arrive ahead of the gap at 1: buffered, acknowledged.
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(2, "ef"))))
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(3, "gh"))))
		// A duplicate of a buffered block: acknowledged, not stored twice.
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(3, "XX"))))
		require.Equal(t, "ab", readAll(t, c, 2))
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(1, "cd"))))
		require.Equal(t, "cdefgh", readAll(t, c, 6))
		// A block received before: acknowledged again, never delivered twice,
		// its content ignored.
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(0, "ZZ"))))
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(4, "ij"))))
		require.Equal(t, "ij", readAll(t, c, 2))
	})
}

// Wrapping from 65535 to 0: the window of seqs seen and ahead moves with it.
func TestReceiverSeqWraps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, e, c := responder(t, &Config{BlockSize: 4096, Window: 16 << 20})
		var want strings.Builder
		for i := 0; i < 65536+300; i++ {
			s := fmt.Sprintf("%d,", i)
			want.WriteString(s)
			require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(i%65536, s))), "seq %d", i)
			if i%5000 == 0 {
				require.Equal(t, want.String(), readAll(t, c, want.Len()))
				want.Reset()
			}
		}
		require.Equal(t, want.String(), readAll(t, c, want.Len()))
		// 65535 is now 300 seqs back... and 100 back is seen; 256 ahead is not allowed.
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(199, "x"))))
		resp := deliver(t, e, stanza.SetIQ, bobJID, data((300+256)%65536, "x"))
		require.Equal(t, "bad-request", errCond(resp), resp)
	})
}

var violations = [...]struct {
	name  string
	setup []string // data delivered first (acknowledged)
	bad   string
	why   string
	kept  string // what Read still returns before the error: it was accepted
}{
	0: {"far ahead", nil, data(256, "x"), "outside the window", ""},
	1: {"far behind", []string{data(0, "a")}, data(65000, "x"), "outside the window", "a"},
	2: {"malformed seq", nil, `<data xmlns='urn:xmpp:xtls:0' sid='s1' seq='-1'>AA==</data>`, "seq", ""},
	3: {"malformed seen seq", []string{data(0, "a")}, `<data xmlns='urn:xmpp:xtls:0' sid='s1' seq='0'>A</data>`, "base64", "a"},
	4: {"empty", nil, `<data xmlns='urn:xmpp:xtls:0' sid='s1' seq='0'></data>`, "empty", ""},
	5: {"over block-size", nil, data(0, strings.Repeat("x", 4097)), "block-size", ""},
	6: {"child element", nil, `<data xmlns='urn:xmpp:xtls:0' sid='s1' seq='0'>AA==<x/></data>`, "content", ""},
	7: {"beyond credit", []string{data(0, strings.Repeat("x", 4096)), data(1, strings.Repeat("x", 4096))}, data(2, "y"), "credit", strings.Repeat("x", 8192)},
	8: {"bad credit", nil, `<credit xmlns='urn:xmpp:xtls:0' sid='s1' limit='x'/>`, "limit", ""},
}

// Each violation is answered bad-request (modify) and tears the tunnel down:
// Read and Write fail with a *ProtocolError, and later elements for the sid
// find no tunnel.
func TestReceiverViolations(t *testing.T) {
	for i, tc := range violations {
		t.Run(fmt.Sprintf("%d_%s", i, tc.name), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				_, e, c := responder(t, &Config{BlockSize: 4096, Window: 8192})
				for _, s := range tc.setup {
					require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, s)))
				}
				resp := deliver(t, e, stanza.SetIQ, bobJID, tc.bad)
				require.Equal(t, "bad-request", errCond(resp), resp)
				require.Contains(t, resp, `type="modify"`)
				got, err := io.ReadAll(c)
				require.Equal(t, tc.kept, string(got))
				var pe *ProtocolError
				require.ErrorAs(t, err, &pe)
				require.Contains(t, strings.ToLower(pe.Reason), tc.why)
				require.ErrorIs(t, err, stanza.Error{Condition: stanza.BadRequest})
				_, err = c.Write([]byte("x"))
				require.ErrorAs(t, err, &pe)
				resp = deliver(t, e, stanza.SetIQ, bobJID, data(0, "a"))
				require.Equal(t, "item-not-found", errCond(resp), resp)
			})
		})
	}
}

// Elements for an unknown sid, or from any JID but the tunnel's peer, are
// item-not-found (cancel) and leave the tunnel alone.
func TestReceiverUnknownTunnel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, e, c := responder(t, nil)
		for _, tc := range []struct{ from, elem string }{
			{"mallory@evil.example/m", data(0, "forged")},
			{"bob@example.net/other", data(0, "forged")},
			{"bob@example.net", data(0, "forged")},
			{bobJID, encodeElem(xstanza.Data{SID: "s2", Payload: []byte("x")})},
			{"mallory@evil.example/m", encodeElem(xstanza.Close{SID: sid, Error: "not-acceptable"})},
			{"mallory@evil.example/m", encodeElem(xstanza.Credit{SID: sid, Limit: 1 << 40})},
		} {
			resp := deliver(t, e, stanza.SetIQ, tc.from, tc.elem)
			require.Equal(t, "item-not-found", errCond(resp), resp)
			require.Contains(t, resp, `type="cancel"`)
		}
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(0, "real"))))
		require.Equal(t, "real", readAll(t, c, 4))
	})
}

func TestReceiverWrongIQTypeAndElement(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, e, c := responder(t, nil)
		for _, el := range []string{data(0, "x"), encodeElem(xstanza.Credit{SID: sid, Limit: 1}), encodeElem(xstanza.Close{SID: sid})} {
			resp := deliver(t, e, stanza.GetIQ, bobJID, el)
			require.Equal(t, "bad-request", errCond(resp), resp)
		}
		resp := deliver(t, e, stanza.SetIQ, bobJID, `<frobnicate xmlns='urn:xmpp:xtls:0' sid='s1'/>`)
		require.Equal(t, "feature-not-implemented", errCond(resp), resp)
		require.Contains(t, resp, `type="cancel"`)
		// None of it touched the tunnel.
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(0, "ok"))))
		require.Equal(t, "ok", readAll(t, c, 2))
	})
}

// A close ends the peer's direction: buffered data first, then io.EOF; the
// answer carries closed.
func TestReceiverClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, e, c := responder(t, nil)
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(0, "last words"))))
		resp := deliver(t, e, stanza.SetIQ, bobJID, encodeElem(xstanza.Close{SID: sid}))
		require.Contains(t, resp, `<closed xmlns="urn:xmpp:xtls:0" sid="s1">`, resp)
		got, err := io.ReadAll(c)
		require.NoError(t, err)
		require.Equal(t, "last words", string(got))
		// A late copy of old data is acknowledged; new data after close is a
		// violation.
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(0, "last words"))))
		// Our direction stays open: half-close.
		_, err = c.Write([]byte("reply"))
		require.NoError(t, err)
	})
}

func TestReceiverCloseWithGap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, e, c := responder(t, nil)
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(1, "b"))))
		resp := deliver(t, e, stanza.SetIQ, bobJID, encodeElem(xstanza.Close{SID: sid}))
		require.Equal(t, "bad-request", errCond(resp), resp)
		_, err := c.Read(make([]byte, 1))
		require.ErrorIs(t, err, stanza.Error{Condition: stanza.BadRequest})
	})
}

// A close with an error condition aborts both directions at once: the
// answer is closed, pending and later Reads and Writes fail naming the
// condition, and buffered data is not delivered.
func TestReceiverAbort(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, e, c := responder(t, nil)
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(0, "dropped"))))
		readErr := make(chan error, 1)
		go func() {
			_, err := c.Read(make([]byte, 100))
			_, err = c.Read(make([]byte, 100))
			readErr <- err
		}()
		synctest.Wait()
		resp := deliver(t, e, stanza.SetIQ, bobJID, encodeElem(xstanza.Close{SID: sid, Error: "policy-violation"}))
		require.Contains(t, resp, `<closed`, resp)
		err := <-readErr
		var ae *AbortError
		require.ErrorAs(t, err, &ae)
		require.True(t, ae.Remote)
		require.Equal(t, stanza.PolicyViolation, ae.Condition)
		require.ErrorIs(t, err, stanza.Error{Condition: stanza.PolicyViolation})
		require.Contains(t, err.Error(), "policy-violation")
		_, err = c.Write([]byte("x"))
		require.ErrorAs(t, err, &ae)
	})
}

// Credit limits are absolute: a credit sent again, or an older one arriving
// late, grants nothing more.
func TestReceiverCreditAbsolute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, e, c := responder(t, &Config{ChunkSize: 4096})
		// Bob granted 16384. Fill it.
		wrote := make(chan error, 1)
		go func() {
			_, err := c.Write(bytes.Repeat([]byte("x"), 16384+100))
			wrote <- err
		}()
		synctest.Wait()
		var sent int
		for range 4 {
			s := f.next(t)
			sent += len(s.elem.(xstanza.Data).Payload)
			s.ack()
		}
		synctest.Wait()
		f.none(t)
		require.Equal(t, 16384, sent)
		require.NoError(t, <-wrote)
		for range 3 { // the same credit three times, as retransmissions would
			require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, encodeElem(xstanza.Credit{SID: sid, Limit: 16384 + 50}))))
		}
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, encodeElem(xstanza.Credit{SID: sid, Limit: 100}))))
		synctest.Wait()
		s := f.next(t)
		require.Equal(t, 50, len(s.elem.(xstanza.Data).Payload))
		s.ack()
		synctest.Wait()
		f.none(t)
	})
}

// The receiver grants credit as the application reads, batched: once half
// the window has been read, one credit element with the new absolute limit.
// Data beyond the granted window is refused even when every block is
// well formed.
func TestReceiverWindowFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, e, c := responder(t, &Config{BlockSize: 4096, Window: 16384})
		for i := range 4 {
			require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(i, strings.Repeat("x", 4096)))))
		}
		resp := deliver(t, e, stanza.SetIQ, bobJID, data(4, "y"))
		require.Equal(t, "bad-request", errCond(resp)) // the window is full
		got, err := io.ReadAll(c)                      // what was accepted, then the error
		require.Equal(t, strings.Repeat("x", 4*4096), string(got))
		require.ErrorIs(t, err, stanza.Error{Condition: stanza.BadRequest})
		f.none(t)
	})
}

// The receiver grants credit as the application reads, batched: once half
// the window has been read, one credit element with the new absolute limit.
func TestReceiverCreditGrant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, e, c := responder(t, &Config{BlockSize: 4096, Window: 16384})
		for i := range 4 {
			require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(i, strings.Repeat("x", 4096)))))
		}
		readAll(t, c, 8191)
		synctest.Wait()
		f.none(t) // less than half a window read: no credit yet
		readAll(t, c, 1)
		synctest.Wait()
		s := f.next(t)
		require.Equal(t, xstanza.Credit{SID: sid, Limit: 8192 + 16384}, s.elem)
		s.ack()
		readAll(t, c, 4096)
		synctest.Wait()
		f.none(t)
		readAll(t, c, 4096)
		synctest.Wait()
		s = f.next(t)
		require.Equal(t, xstanza.Credit{SID: sid, Limit: 16384 + 16384}, s.elem)
		s.ack()
		// The new limit holds: data up to it is accepted.
		for i := 4; i < 8; i++ {
			require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(i, strings.Repeat("x", 4096)))))
		}
		require.Equal(t, "bad-request", errCond(deliver(t, e, stanza.SetIQ, bobJID, data(8, "x"))))
	})
}
