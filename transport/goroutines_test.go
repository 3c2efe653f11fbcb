package transport

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"

	xstanza "github.com/xmppxtls/xtls/stanza"
)

// An Endpoint runs two goroutines, its loop and its path's writer, however
// many tunnels it has and however many IQs are in flight: here 256 data
// IQs on 10 tunnels, none answered.
func TestGoroutineBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		before := bubbleGoroutines()
		// 16-byte blocks: the in-flight bound's start (4 KiB) is 256 of
		// them, and no time passes under synctest for it to move.
		f, e := newFakeEndpoint(&Config{ChunkSize: 16})
		t.Cleanup(func() { e.Close() })
		synctest.Wait()
		require.Equal(t, before+2, bubbleGoroutines(), "an Endpoint's own goroutines")

		var conns []*Conn
		for i := range 10 {
			c, err := e.Open(jid.MustParse(bobJID), fmt.Sprintf("s%d", i))
			require.NoError(t, err)
			f.next(t).ackWith(xstanza.Proceed{SID: c.SID(), BlockSize: 65535, Window: 1 << 20}.TokenReader())
			conns = append(conns, c)
		}
		idle := bubbleGoroutines()
		for i, c := range conns {
			n := 25 * 16
			if i == 0 {
				n += 6 * 16
			}
			_, err := c.Write(make([]byte, n))
			require.NoError(t, err)
		}
		synctest.Wait()
		inFlight := 0
		for {
			s, ok := tryNext(f)
			if !ok {
				break
			}
			require.IsType(t, xstanza.Data{}, s.elem)
			inFlight++
		}
		require.Equal(t, 256, inFlight)
		require.Equal(t, idle, bubbleGoroutines(), "goroutines with 256 IQs in flight")
		require.Equal(t, before+2, bubbleGoroutines())
	})
}

// bubbleGoroutines counts the goroutines of the calling synctest bubble:
// those of other tests, which may still be ending, do not count.
func bubbleGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return bytes.Count(buf[:n], []byte(", synctest bubble "))
		}
		buf = make([]byte, 2*len(buf))
	}
}
