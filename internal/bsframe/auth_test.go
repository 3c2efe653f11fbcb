package bsframe_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/xmppxtls/xtls/internal/bsframe"
)

// standIn is NOT a TLS exporter. It stands in for one so that the vector
// checks the context construction without a TLS session:
//
//	export(label, context, L) = HKDF-SHA256(IKM = secret, salt = empty, info = label ‖ 0x00 ‖ context, L)
//
// with secret = 00 01 … 1f. Real authenticators come from the exporter of
// the tunnel's TLS session.
func standIn(label string, context []byte, length int) ([]byte, error) {
	secret := make([]byte, 32)
	for i := range secret {
		secret[i] = byte(i)
	}
	return hkdf.Key(sha256.New, secret, nil, label+"\x00"+string(context), length)
}

// The vector of docs/bytestream-frames.md.
var authVector = struct {
	sid                  string
	nonce                string
	ctxI, ctxR           string
	initiator, responder string
}{
	sid:       "vxf9n471bn46",
	nonce:     "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
	ctxI:      "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf 49 767866396e343731626e3436",
	ctxR:      "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf 52 767866396e343731626e3436",
	initiator: "8820c1d563668b5295af0c720d71224b6c1ebae6b907443742f570d999674a3f",
	responder: "185f46d33aa3d3e93adf42bbd036d2bd406077a137295319b00657c1bc8a9404",
}

func vectorNonce(t testing.TB) [16]byte {
	return [16]byte(unhex(t, authVector.nonce))
}

func TestAuthenticatorsVector(t *testing.T) {
	i, r, err := bsframe.Authenticators(standIn, authVector.sid, vectorNonce(t))
	require.NoError(t, err)
	require.Equal(t, unhex(t, authVector.initiator), i[:], "initiator")
	require.Equal(t, unhex(t, authVector.responder), r[:], "responder")
}

// Authenticators asks the exporter once per role, with the label, the
// context nonce ‖ role ‖ sid and 32 bytes, and returns what it gave.
func TestAuthenticatorsContext(t *testing.T) {
	type call struct {
		label   string
		context []byte
		length  int
	}
	var calls []call
	rec := func(label string, context []byte, length int) ([]byte, error) {
		calls = append(calls, call{label, bytes.Clone(context), length})
		return bytes.Repeat([]byte{byte(len(calls))}, length), nil
	}
	i, r, err := bsframe.Authenticators(rec, authVector.sid, vectorNonce(t))
	require.NoError(t, err)
	require.Equal(t, []call{
		{"EXPORTER-xmpp-xtls-bytestream", unhex(t, authVector.ctxI), 32},
		{"EXPORTER-xmpp-xtls-bytestream", unhex(t, authVector.ctxR), 32},
	}, calls)
	require.Equal(t, bytes.Repeat([]byte{1}, 32), i[:])
	require.Equal(t, bytes.Repeat([]byte{2}, 32), r[:])
}

// Each input changes both authenticators.
func TestAuthenticatorsDiffer(t *testing.T) {
	nonce := vectorNonce(t)
	i0, r0, err := bsframe.Authenticators(standIn, "s1", nonce)
	require.NoError(t, err)
	require.NotEqual(t, i0, r0)
	i1, r1, err := bsframe.Authenticators(standIn, "s2", nonce)
	require.NoError(t, err)
	nonce[15] ^= 1
	i2, r2, err := bsframe.Authenticators(standIn, "s1", nonce)
	require.NoError(t, err)
	for _, a := range [][32]byte{i1, r1, i2, r2} {
		require.NotEqual(t, i0, a)
		require.NotEqual(t, r0, a)
	}
}

func TestAuthenticatorsRefuses(t *testing.T) {
	nonce := vectorNonce(t)
	for _, sid := range []string{"", strings.Repeat("s", bsframe.MaxSIDLen+1), "bad\xff"} {
		_, _, err := bsframe.Authenticators(standIn, sid, nonce)
		require.Error(t, err, "%q", sid)
	}
	_, _, err := bsframe.Authenticators(standIn, strings.Repeat("s", bsframe.MaxSIDLen), nonce)
	require.NoError(t, err)

	errExport := errors.New("no exporter")
	_, _, err = bsframe.Authenticators(func(string, []byte, int) ([]byte, error) { return nil, errExport }, "s", nonce)
	require.ErrorIs(t, err, errExport)
	_, _, err = bsframe.Authenticators(func(string, []byte, int) ([]byte, error) { return make([]byte, 31), nil }, "s", nonce)
	require.Error(t, err)
}

// Both ends of a real TLS 1.3 session derive the same authenticators from
// (*tls.ConnectionState).ExportKeyingMaterial.
func TestAuthenticatorsTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "bytestream.test"},
		DNSNames:     []string{"bytestream.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	roots.AddCert(leaf)

	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	server := tls.Server(c1, &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		MinVersion:   tls.VersionTLS13,
	})
	client := tls.Client(c2, &tls.Config{RootCAs: roots, ServerName: "bytestream.test", MinVersion: tls.VersionTLS13})
	done := make(chan error, 1)
	go func() { done <- server.Handshake() }()
	require.NoError(t, client.Handshake())
	require.NoError(t, <-done)

	cs, ss := client.ConnectionState(), server.ConnectionState()
	ci, cr, err := bsframe.Authenticators(cs.ExportKeyingMaterial, "sid-1", vectorNonce(t))
	require.NoError(t, err)
	si, sr, err := bsframe.Authenticators(ss.ExportKeyingMaterial, "sid-1", vectorNonce(t))
	require.NoError(t, err)
	require.Equal(t, ci, si)
	require.Equal(t, cr, sr)
	require.NotEqual(t, ci, cr)
}

// conn is one end of a bytestream: what the peer sent, and what this end
// writes.
type conn struct {
	in  io.Reader
	out bytes.Buffer
}

func (c *conn) Read(p []byte) (int, error)  { return c.in.Read(p) }
func (c *conn) Write(p []byte) (int, error) { return c.out.Write(p) }

func TestAuthenticate(t *testing.T) {
	var ai, ar [32]byte
	copy(ai[:], bytes.Repeat([]byte{0x11}, 32))
	copy(ar[:], bytes.Repeat([]byte{0x22}, 32))
	wrong := ar
	wrong[31] ^= 0x80
	frame := unhex(t, "03 00000001")

	for name, c := range map[string]struct {
		role    bsframe.Role
		in      []byte
		err     error
		written []byte
	}{
		// The initiator writes first and reads on into the frames.
		"initiator": {bsframe.Initiator, append(ar[:], frame...), nil, ai[:]},
		// The responder answers only after checking.
		"responder": {bsframe.Responder, append(ai[:], frame...), nil, ar[:]},
		// A wrong answer, one bit off.
		"initiator, wrong": {bsframe.Initiator, wrong[:], bsframe.ErrAuthenticator, ai[:]},
		// A hijacker on the proxy slot learns nothing from the responder.
		"responder, wrong":    {bsframe.Responder, ar[:], bsframe.ErrAuthenticator, nil},
		"responder, short":    {bsframe.Responder, ai[:31], io.ErrUnexpectedEOF, nil},
		"responder, nothing":  {bsframe.Responder, nil, io.EOF, nil},
		"initiator, short":    {bsframe.Initiator, ar[:5], io.ErrUnexpectedEOF, ai[:]},
		"responder, one byte": {bsframe.Responder, append(ai[:], frame...), nil, ar[:]},
	} {
		t.Run(name, func(t *testing.T) {
			var in io.Reader = bytes.NewReader(c.in)
			if strings.HasSuffix(name, "one byte") {
				in = iotest.OneByteReader(in)
			}
			rw := &conn{in: in}
			err := bsframe.Authenticate(rw, c.role, ai, ar)
			if c.err == nil {
				require.NoError(t, err)
				// Exactly 32 bytes were read: the frame is next.
				f, err := bsframe.NewReader(rw).Next()
				require.NoError(t, err)
				require.Equal(t, bsframe.Frame{Type: bsframe.Result, ID: 1}, f)
			} else {
				require.ErrorIs(t, err, c.err)
			}
			require.Equal(t, c.written, rw.out.Bytes())
		})
	}
	require.Error(t, bsframe.Authenticate(&conn{in: bytes.NewReader(nil)}, 'X', ai, ar))
}

// The whole exchange between both roles over a synchronous pipe, followed
// by frames in both directions.
func TestAuthenticatePipe(t *testing.T) {
	ai, ar, err := bsframe.Authenticators(standIn, authVector.sid, vectorNonce(t))
	require.NoError(t, err)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()

	done := make(chan error, 1)
	go func() {
		if err := bsframe.Authenticate(b, bsframe.Responder, ai, ar); err != nil {
			done <- err
			return
		}
		w := bsframe.NewWriter(b)
		if err := w.WriteFrame(bsframe.Frame{Type: bsframe.Bye}); err != nil {
			done <- err
			return
		}
		done <- w.Flush()
	}()
	require.NoError(t, bsframe.Authenticate(a, bsframe.Initiator, ai, ar))
	f, err := bsframe.NewReader(a).Next()
	require.NoError(t, err)
	require.Equal(t, bsframe.Bye, f.Type)
	require.NoError(t, <-done)
}
