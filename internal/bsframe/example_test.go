package bsframe_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"

	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/internal/bsframe"
)

// One direction of a bytestream: a block, its peer's answers, and the end.
func Example() {
	var stream bytes.Buffer
	w := bsframe.NewWriter(&stream)
	for _, f := range []bsframe.Frame{
		{Type: bsframe.Data, ID: 1, Seq: 0, Payload: []byte("hello")},
		{Type: bsframe.Credit, ID: 2, Limit: 65536},
		{Type: bsframe.Error, ID: 7, ErrType: stanza.Wait, Cond: stanza.ResourceConstraint},
		{Type: bsframe.Bye},
	} {
		if err := w.WriteFrame(f); err != nil {
			panic(err)
		}
	}
	if err := w.Flush(); err != nil {
		panic(err)
	}
	fmt.Println(hex.EncodeToString(stream.Bytes()))

	r := bsframe.NewReader(&stream)
	for {
		f, err := r.Next()
		if err != nil {
			fmt.Println(err)
			break
		}
		switch f.Type {
		case bsframe.Data:
			fmt.Printf("%v id=%d seq=%d %q\n", f.Type, f.ID, f.Seq, f.Payload)
		case bsframe.Credit:
			fmt.Printf("%v id=%d limit=%d\n", f.Type, f.ID, f.Limit)
		case bsframe.Error:
			fmt.Printf("%v id=%d %s %s\n", f.Type, f.ID, f.ErrType, f.Cond)
		default:
			fmt.Println(f.Type)
		}
	}
	// Output:
	// 01000000010000000568656c6c6f020000000200000000000100000400000007051205
	// DATA id=1 seq=0 "hello"
	// CREDIT id=2 limit=65536
	// ERROR id=7 wait resource-constraint
	// BYE
	// EOF
}

// Both ends of a bytestream check each other before any frame. The exporter
// here is a stand-in: use the tunnel's
// (*tls.ConnectionState).ExportKeyingMaterial.
func ExampleAuthenticate() {
	export := func(label string, context []byte, length int) ([]byte, error) {
		sum := sha256.Sum256(append([]byte(label), context...))
		return sum[:length], nil
	}
	nonce := [16]byte{1, 2, 3} // chosen at random by the requester, per attempt
	ia, ra, err := bsframe.Authenticators(export, "vxf9n471bn46", nonce)
	if err != nil {
		panic(err)
	}

	requester, target := net.Pipe()
	defer requester.Close()
	done := make(chan error)
	go func() {
		defer target.Close()
		done <- bsframe.Authenticate(target, bsframe.Responder, ia, ra)
	}()
	fmt.Println("requester:", bsframe.Authenticate(requester, bsframe.Initiator, ia, ra))
	fmt.Println("target:", <-done)

	// A hijacker on the proxy slot does not know the initiator's bytes.
	hijacker, target := net.Pipe()
	defer hijacker.Close()
	go func() {
		defer target.Close()
		done <- bsframe.Authenticate(target, bsframe.Responder, ia, ra)
	}()
	_, _ = hijacker.Write(make([]byte, bsframe.AuthenticatorSize))
	fmt.Println("target:", <-done)
	// Output:
	// requester: <nil>
	// target: <nil>
	// target: bsframe: wrong bytestream authenticator
}
