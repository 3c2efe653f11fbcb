package xtls

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
)

// testCert is the server's certificate in tlsConns.
var testCert = sync.OnceValues(func() (tls.Certificate, error) {
	return GenerateCertificate(jid.MustParse("bob@example.net/b"))
})

// tlsConns runs TLS 1.3 over cc and sc and returns two Conns over it,
// without the tunnel. If framed, r runs contract 4's demultiplexer: w
// writes records (writeApp) and closing w's TLS ends r's demultiplexer
// (close_notify).
func tlsConns(tb testing.TB, cc, sc net.Conn, framed bool) (w, r *Conn) {
	tb.Helper()
	crt, err := testCert()
	require.NoError(tb, err)
	client := tls.Client(cc, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	server := tls.Server(sc, &tls.Config{Certificates: []tls.Certificate{crt}, SessionTicketsDisabled: true})
	errc := make(chan error, 1)
	go func() { errc <- server.Handshake() }()
	require.NoError(tb, client.Handshake())
	require.NoError(tb, <-errc)
	h := &Handler{cfg: Config{Bytestreams: BytestreamOff}}
	w = &Conn{h: h, tls: client, raw: &rawConn{}}
	r = &Conn{h: h, tls: server, raw: &rawConn{}}
	if framed {
		r.startDemux()
	}
	return w, r
}

// tlsPair is tlsConns over TCP loopback.
func tlsPair(tb testing.TB, framed bool) (w, r *Conn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(tb, err)
	sc := <-acc
	require.NotNil(tb, sc)
	w, r = tlsConns(tb, cc, sc, framed)
	tb.Cleanup(func() {
		w.tls.Close()
		r.tls.Close()
	})
	return w, r
}

// BenchmarkDemux moves application bytes one way through a contract 4
// Conn over TLS on TCP loopback, without the tunnel, so that what is
// measured is the records' framing and the demultiplexer: the writer
// writes 32 KiB at a time, the reader reads with a buffer of readBuf
// bytes (io.CopyBuffer, with the ReadFrom of io.Discard hidden). An op
// is 1 MiB. "unframed" is the same over the bare TLS conns (contract 3),
// for reference.
func BenchmarkDemux(b *testing.B) {
	for _, readBuf := range []int{512, 4 << 10, 32 << 10} {
		for _, framed := range []bool{true, false} {
			name := fmt.Sprintf("read=%d", readBuf)
			if !framed {
				name += "/unframed"
			}
			b.Run(name, func(b *testing.B) { benchmarkDemux(b, readBuf, framed) })
		}
	}
}

func benchmarkDemux(b *testing.B, readBuf int, framed bool) {
	const chunk = 1 << 20
	w, r := tlsPair(b, framed)
	write := w.writeApp
	if !framed {
		write = w.tls.Write
	}
	werr := make(chan error, 1)
	b.SetBytes(chunk)
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		buf := make([]byte, 32<<10)
		for range b.N {
			for n := 0; n < chunk; n += len(buf) {
				if _, err := write(buf); err != nil {
					werr <- err
					return
				}
			}
		}
		werr <- w.tls.Close()
	}()
	n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{r}, make([]byte, readBuf))
	b.StopTimer()
	require.NoError(b, err)
	require.NoError(b, <-werr)
	require.Equal(b, int64(b.N)*chunk, n)
}
