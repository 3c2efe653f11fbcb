package xtls_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/xmppxtls/xtls/xtls"
)

// BenchmarkFramedTunnel moves application bytes one way through a Conn
// over a tunnel on the in-memory network (xtlstest, no latency):
// everything a byte goes through, XMPP and the transport included, with
// 32 KiB writes and reads. An op is 1 MiB; cpu-ms/op is the CPU time of the
// process (both ends), where the regressions of contract 4 showed.
// Contract 3 has no records and no demultiplexer, for reference;
// BenchmarkDemux measures them alone.
func BenchmarkFramedTunnel(b *testing.B) {
	for _, contract := range []int{3, 4} {
		b.Run(fmt.Sprintf("contract=%d", contract), func(b *testing.B) {
			benchmarkTunnel(b, contract)
		})
	}
}

func benchmarkTunnel(b *testing.B, contract int) {
	const chunk = 1 << 20
	w := newWorld(b)
	alice, err := w.node(aliceJID)
	require.NoError(b, err)
	bob, err := w.node(bobJID)
	require.NoError(b, err)
	if contract == 3 {
		xtls.UseContract3(alice.h)
		xtls.UseContract3(bob.h)
	}
	x, y, err := dialAccept(b, alice, bob)
	require.NoError(b, err)
	require.Equal(b, contract == 4, x.ConnectionState().NegotiatedProtocol == "xmpp-xtls/4")
	defer func() {
		x.Close()
		y.Close()
		<-x.Tunnel().Done()
		<-y.Tunnel().Done()
	}()
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 32<<10)
		for n := int64(0); n < int64(b.N)*chunk; {
			k, err := y.Read(buf)
			n += int64(k)
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	buf := make([]byte, 32<<10)
	b.SetBytes(chunk)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	for range b.N {
		for n := 0; n < chunk; n += len(buf) {
			_, err := x.Write(buf)
			require.NoError(b, err)
		}
	}
	require.NoError(b, <-done)
	b.ReportMetric(float64(processCPU()-cpu)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}
