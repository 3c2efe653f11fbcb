package transport

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	xstanza "github.com/xmppxtls/xtls/stanza"
)

// The receiver's order of checks (docs/protocol.md §6), where issue 19
// settled what the text had left open (docs/decisions-19.md).

// D3, C3 and X3 come before D4, C4 and X4: an element for a direction that
// does not exist yet (the initiator has no proceed) is item-not-found and
// touches nothing, even when it is malformed, and even an abort.
func TestStateBeforeWellFormedness(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, e, c, start := initiator(t, nil)
		for _, el := range []string{
			`<data xmlns='urn:xmpp:xtls:0' sid='s1' seq='x'>AA==</data>`,
			`<credit xmlns='urn:xmpp:xtls:0' sid='s1' limit='-1'/>`,
			`<close xmlns='urn:xmpp:xtls:0' sid='s1' error='gone'/>`,
			`<close xmlns='urn:xmpp:xtls:0' sid='s1' error='nonsense'/>`,
		} {
			resp := deliver(t, e, stanza.SetIQ, bobJID, el)
			require.Equal(t, "item-not-found", errCond(resp), "%s: %s", el, resp)
		}
		proceed(start, 4096, 65536)
		_, err := c.Write([]byte("alive"))
		require.NoError(t, err)
		s := f.next(t)
		require.Equal(t, []byte("alive"), payloadOf(t, s))
		s.ack()
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(0, "both ways"))))
		require.Equal(t, "both ways", readAll(t, c, 9))
	})
}

// D5/D6: a seq below the next expected one is a duplicate only if it was
// received; one never received is a violation.
func TestNeverReceivedSeq(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, e, _ := responder(t, nil)
		resp := deliver(t, e, stanza.SetIQ, bobJID, data(65535, "x"))
		require.Equal(t, "bad-request", errCond(resp), resp)
	})
	synctest.Test(t, func(t *testing.T) {
		_, e, _ := responder(t, nil)
		for i := range 10 {
			require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(i, "x"))))
		}
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(5, "dup"))))
		resp := deliver(t, e, stanza.SetIQ, bobJID, data(65535, "x")) // 11 back
		require.Equal(t, "bad-request", errCond(resp), resp)
	})
}

// S5b: a start for a tunnel we closed with Close, kept only to answer the
// peer's close, ends that linger and is judged as a new start; a start for
// a tunnel in use is bad-request and leaves it alone.
func TestStartEndsLinger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, e, c := responder(t, nil)
		start := encodeElem(xstanza.Start{SID: sid, BlockSize: 4096, Window: 16384})
		resp := deliver(t, e, stanza.SetIQ, bobJID, start)
		require.Equal(t, "bad-request", errCond(resp), "sid in use: %s", resp)
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(0, "still"))))
		require.Equal(t, "still", readAll(t, c, 5))

		go c.Close()
		cl := f.next(t)
		require.Equal(t, xstanza.Close{SID: sid}, cl.elem)
		cl.ackWith(xstanza.Closed{SID: sid}.TokenReader())
		synctest.Wait()
		select {
		case <-c.Done():
			t.Fatal("gone before the peer closed: nothing to linger for")
		default:
		}
		var again *Conn
		e.SetAcceptFunc(func(c *Conn) error { again = c; return nil })
		resp = deliver(t, e, stanza.SetIQ, bobJID, start)
		require.Contains(t, resp, "<proceed", resp)
		<-c.Done()
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(0, "new"))))
		require.Equal(t, "new", readAll(t, again, 3))
		_, err := again.Write([]byte("back"))
		require.NoError(t, err)
		s := f.next(t)
		require.Equal(t, []byte("back"), payloadOf(t, s))
		s.ack()
	})
}

// S1 to S7 in order: the first check that fails decides.
func TestStartRefusalOrder(t *testing.T) {
	good := encodeElem(xstanza.Start{SID: "s2", BlockSize: 4096, Window: 16384})
	for i, tc := range []struct {
		name     string
		listen   bool
		maxed    bool // MaxTunnels reached
		inUse    bool // s2 held between the pair
		elem     string
		want     string
		wantType string
	}{
		0: {"not listening beats the limit", false, true, false, good, "not-acceptable", "cancel"},
		1: {"malformed beats not listening", false, false, false, `<start xmlns='urn:xmpp:xtls:0' sid='s2' block-size='4096'/>`, "bad-request", "modify"},
		2: {"unknown method beats sid in use", true, false, true, `<start xmlns='urn:xmpp:xtls:0' sid='s2' block-size='4096' window='16384' method='psk'/>`, "feature-not-implemented", "cancel"},
		3: {"sid in use beats the limit", true, true, true, good, "bad-request", "modify"},
		4: {"the limit", true, true, false, good, "resource-constraint", "wait"},
	} {
		t.Run(fmt.Sprintf("%d_%s", i, tc.name), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := &Config{MaxTunnels: 1}
				if !tc.maxed {
					cfg.MaxTunnels = 2
				}
				f, e := newFakeEndpoint(cfg)
				t.Cleanup(func() { e.Close() })
				e.SetAcceptFunc(func(*Conn) error { return nil })
				held := "s1"
				if tc.inUse {
					held = "s2"
				}
				require.Contains(t, deliver(t, e, stanza.SetIQ, bobJID, encodeElem(xstanza.Start{SID: held, BlockSize: 4096, Window: 16384})), "<proceed")
				if !tc.listen {
					e.SetAcceptFunc(nil)
				}
				resp := deliver(t, e, stanza.SetIQ, bobJID, tc.elem)
				require.Equal(t, tc.want, errCond(resp), resp)
				require.Contains(t, resp, `type="`+tc.wantType+`"`)
				f.none(t)
			})
		})
	}
}

// An initiator may reuse a sid as soon as its tunnel is forgotten: nothing
// the old tunnel had queued follows the new start.
func TestSIDReuseAfterTeardown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, e, c, start := initiator(t, &Config{ChunkSize: 4096})
		proceed(start, 4096, 1<<20)
		f.out <- struct{}{} // the session's output is busy: stanzas wait
		go c.Write(bytes.Repeat([]byte("o"), 5*4096))
		synctest.Wait()
		// The peer breaks the protocol: the tunnel is torn down with data
		// waiting to be written.
		resp := deliver(t, e, stanza.SetIQ, bobJID, `<credit xmlns='urn:xmpp:xtls:0' sid='s1' limit='-1'/>`)
		require.Equal(t, "bad-request", errCond(resp))
		c2, err := e.Open(jid.MustParse(bobJID), sid)
		require.NoError(t, err)
		_, err = c2.Write([]byte("new"))
		require.NoError(t, err)
		<-f.out // the output is free again
		synctest.Wait()
		var after []string
		seenStart := false
		for {
			s, ok := tryNext(f)
			if !ok {
				break
			}
			if _, isStart := s.elem.(xstanza.Start); isStart {
				seenStart = true
				continue
			}
			if seenStart {
				after = append(after, s.raw)
			}
		}
		require.True(t, seenStart)
		require.Len(t, after, 1, "only the new tunnel's first flight follows the new start: %v", after)
		require.Contains(t, after[0], "bmV3") // "new"
	})
}

// A responder judges the first flight as any data (a sender's 4096-byte
// bound is the sender's to keep): seq 0 within its block-size is taken,
// one beyond it is a violation.
func TestFirstFlightJudgedAsData(t *testing.T) {
	for _, tc := range []struct {
		blockSize int
		want      bool
	}{{65535, true}, {4096, false}} {
		t.Run(fmt.Sprint(tc.blockSize), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				_, e := newFakeEndpoint(&Config{BlockSize: tc.blockSize})
				t.Cleanup(func() { e.Close() })
				var got *Conn
				e.SetAcceptFunc(func(c *Conn) error { got = c; return nil })
				require.Contains(t, deliver(t, e, stanza.SetIQ, bobJID, encodeElem(xstanza.Start{SID: sid, BlockSize: 4096, Window: 16384})), "<proceed")
				resp := deliver(t, e, stanza.SetIQ, bobJID, data(0, strings.Repeat("h", 5000)))
				if !tc.want {
					require.Equal(t, "bad-request", errCond(resp))
					return
				}
				require.True(t, isAck(resp), resp)
				require.Equal(t, strings.Repeat("h", 5000), readAll(t, got, 5000))
			})
		})
	}
}

// G1, G2, C5 and an abort's aftermath: the element types a receiver does
// not take touch no tunnel; a credit at or below one received is
// acknowledged and ignored; after an abort the sid is forgotten.
func TestDispatchAndAftermath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, e, c := responder(t, &Config{ChunkSize: 4096})
		for _, tc := range []struct {
			typ  stanza.IQType
			elem string
			want string
		}{
			{stanza.GetIQ, encodeElem(xstanza.Start{SID: "s9", BlockSize: 4096, Window: 16384}), "bad-request"},
			{stanza.SetIQ, encodeElem(xstanza.Proceed{SID: sid, BlockSize: 4096, Window: 16384}), "feature-not-implemented"},
			{stanza.SetIQ, encodeElem(xstanza.Closed{SID: sid}), "feature-not-implemented"},
		} {
			require.Equal(t, tc.want, errCond(deliver(t, e, tc.typ, bobJID, tc.elem)))
		}
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, data(0, "ok"))))
		// Bob granted 16384; 20000, then a late 10000.
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, encodeElem(xstanza.Credit{SID: sid, Limit: 20000}))))
		require.True(t, isAck(deliver(t, e, stanza.SetIQ, bobJID, encodeElem(xstanza.Credit{SID: sid, Limit: 10000}))))
		go c.Write(make([]byte, 25000))
		sent := 0
		for sent < 20000 {
			s := f.next(t)
			sent += len(payloadOf(t, s))
			s.ack()
		}
		synctest.Wait()
		f.none(t)
		require.Equal(t, 20000, sent)

		require.Contains(t, deliver(t, e, stanza.SetIQ, bobJID, encodeElem(xstanza.Close{SID: sid, Error: "gone"})), "<closed")
		_, err := io.ReadAll(c)
		var ae *AbortError
		require.ErrorAs(t, err, &ae)
		for _, el := range []string{data(1, "x"), encodeElem(xstanza.Credit{SID: sid, Limit: 1 << 20}), encodeElem(xstanza.Close{SID: sid}), encodeElem(xstanza.Close{SID: sid, Error: "gone"})} {
			require.Equal(t, "item-not-found", errCond(deliver(t, e, stanza.SetIQ, bobJID, el)), el)
		}
	})
}

// Crossed starts, from the loser's side: its own Conn reports a
// *CrossedError naming the peer's tunnel, which is the one both use; its
// first flight is not sent again.
func TestCrossedStartLoser(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const winner = "aaron@example.net/w" // sorts before alice: wins
		f, e := newFakeEndpoint(nil)
		t.Cleanup(func() { e.Close() })
		old, err := e.Open(jid.MustParse(winner), "x1")
		require.NoError(t, err)
		_, err = old.Write([]byte("hello"))
		require.NoError(t, err)
		require.IsType(t, xstanza.Start{}, f.next(t).elem)
		d0 := f.next(t)
		require.Equal(t, []byte("hello"), payloadOf(t, d0))
		resp := deliver(t, e, stanza.SetIQ, winner, encodeElem(xstanza.Start{SID: "x1", BlockSize: 4096, Window: 16384}))
		require.Contains(t, resp, "<proceed", resp)
		_, err = old.Read(make([]byte, 1))
		var ce *CrossedError
		require.ErrorAs(t, err, &ce)
		_, err = old.Write([]byte("more"))
		require.ErrorAs(t, err, &ce)
		d0.fail(stanza.Cancel, stanza.ItemNotFound) // the winner refused it
		_, err = ce.Conn.Write([]byte("as responder"))
		require.NoError(t, err)
		s := f.next(t)
		require.Equal(t, uint16(0), s.elem.(xstanza.Data).Seq)
		require.Equal(t, []byte("as responder"), payloadOf(t, s))
		synctest.Wait()
		f.none(t)
	})
}
