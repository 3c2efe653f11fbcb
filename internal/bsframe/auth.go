package bsframe

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// ExporterLabel is the TLS exporter label (RFC 8446 §7.5, RFC 5705) from
// which both ends of a tunnel derive a bytestream's authenticators.
const ExporterLabel = "EXPORTER-xmpp-xtls-bytestream"

// AuthenticatorSize is the size of an authenticator in bytes.
const AuthenticatorSize = 32

// MaxSIDLen is the largest sid, in bytes, that Authenticators takes.
const MaxSIDLen = 255

// Role is the side of a bytestream, as it appears in the exporter context.
type Role byte

// The two roles. Initiator is the side that opened the bytestream: the
// XEP-0065 requester, which connects to the proxy second and activates it.
// It is not necessarily the initiator of the tunnel.
const (
	Initiator Role = 'I'
	Responder Role = 'R'
)

// ErrAuthenticator is returned by Authenticate when the peer's
// authenticator is not the expected one. The bytestream must then be closed
// at once.
var ErrAuthenticator = errors.New("bsframe: wrong bytestream authenticator")

// Authenticators derives the authenticators of the bytestream sid, attempt
// nonce, from the TLS session of the tunnel: initiator is what the
// Initiator sends, responder what the Responder sends. export is the
// session's exporter; (*tls.ConnectionState).ExportKeyingMaterial has this
// signature. Each is export(ExporterLabel, nonce ‖ role ‖ sid, 32), with
// role the byte 'I' or 'R' and sid in UTF-8.
//
// sid must be valid UTF-8 of 1 to MaxSIDLen bytes. An error of export, or an
// output that is not 32 bytes long, is returned as an error.
func Authenticators(export func(label string, context []byte, length int) ([]byte, error), sid string, nonce [16]byte) (initiator, responder [AuthenticatorSize]byte, err error) {
	if len(sid) == 0 || len(sid) > MaxSIDLen || !utf8.ValidString(sid) {
		return initiator, responder, fmt.Errorf("bsframe: sid %q is not 1 to %d bytes of UTF-8", sid, MaxSIDLen)
	}
	if initiator, err = authenticator(export, Initiator, sid, nonce); err != nil {
		return initiator, responder, err
	}
	responder, err = authenticator(export, Responder, sid, nonce)
	return initiator, responder, err
}

func authenticator(export func(string, []byte, int) ([]byte, error), role Role, sid string, nonce [16]byte) (a [AuthenticatorSize]byte, err error) {
	ctx := make([]byte, 0, len(nonce)+1+len(sid))
	ctx = append(append(append(ctx, nonce[:]...), byte(role)), sid...)
	out, err := export(ExporterLabel, ctx, AuthenticatorSize)
	if err != nil {
		return a, fmt.Errorf("bsframe: exporting the %c authenticator: %w", role, err)
	}
	if len(out) != AuthenticatorSize {
		return a, fmt.Errorf("bsframe: the exporter returned %d bytes, want %d", len(out), AuthenticatorSize)
	}
	copy(a[:], out)
	return a, nil
}

// Authenticate runs the authenticator exchange at the start of a bytestream,
// as role, before any frame. The Initiator writes initiator, then reads the
// peer's 32 bytes and checks them against responder. The Responder reads the
// peer's 32 bytes and checks them against initiator, and only if they match
// writes responder. The comparison takes constant time.
//
// Authenticate reads exactly 32 bytes, so a Reader made from rw afterwards
// gets the first frame. It returns ErrAuthenticator for a mismatch, an error
// matching io.ErrUnexpectedEOF (or io.EOF) for a stream that ends before 32
// bytes, and rw's own errors as they are. On any error the caller must close
// the bytestream without writing anything more; Authenticate sets no
// deadline (set one on the connection).
func Authenticate(rw io.ReadWriter, role Role, initiator, responder [AuthenticatorSize]byte) error {
	switch role {
	case Initiator:
		if _, err := rw.Write(initiator[:]); err != nil {
			return err
		}
		return check(rw, &responder)
	case Responder:
		if err := check(rw, &initiator); err != nil {
			return err
		}
		_, err := rw.Write(responder[:])
		return err
	}
	return fmt.Errorf("bsframe: unknown role %q", byte(role))
}

func check(r io.Reader, want *[AuthenticatorSize]byte) error {
	var got [AuthenticatorSize]byte
	if _, err := io.ReadFull(r, got[:]); err != nil {
		return fmt.Errorf("bsframe: reading the peer's authenticator: %w", err)
	}
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return ErrAuthenticator
	}
	return nil
}
