package xtls_test

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/xtls"
)

// Bob pairs once with one of alice's devices whose certificate her user CA
// issued: he pins her CA. Another device of hers, a renewed certificate,
// and a device with an Ed25519 key are then trusted without pairing, and
// State says the trust came through her CA.
func TestUserCANewDeviceAndRenewal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		alice := jid.MustParse(aliceJID)
		ca, err := xtls.NewUserCA(alice)
		require.NoError(t, err)
		phoneCert, err := ca.Issue(xtls.WithValidity(30 * 24 * time.Hour))
		require.NoError(t, err)

		code := xtls.NewPairingCode()
		w := newWorld(t)
		cb, pb := pairing(code)
		ca1, pa := pairing(code)
		ca1.Certificate = phoneCert
		b := w.join(bobJID, cb)
		phone := w.join("alice@example.net/phone", ca1)
		c1, c2, err := dialAccept(t, b, phone)
		require.NoError(t, err)
		st := c1.State()
		require.Equal(t, xtls.TrustPaired, st.Trust)
		require.True(t, st.ViaUserCA)
		require.Equal(t, ca.Fingerprint(), st.Pinned)
		require.NotEqual(t, ca.Fingerprint(), st.Fingerprint, "the leaf is the device's")
		require.Equal(t, []xtls.Fingerprint{ca.Fingerprint()}, pinsOf(t, pb, aliceJID))
		require.Equal(t, []xtls.Fingerprint{c2.State().Fingerprint}, pinsOf(t, pa, bobJID))
		c1.Close()
		c2.Close()
		b.cfg.PairingCode = nil

		for _, tc := range []struct {
			name string
			addr string
			opts []xtls.CertOption
		}{
			{"second device", "alice@example.net/laptop", nil},
			{"renewed certificate", "alice@example.net/phone2", []xtls.CertOption{xtls.WithValidity(365 * 24 * time.Hour)}},
			{"ed25519 device", "alice@example.net/watch", []xtls.CertOption{xtls.WithEd25519()}},
		} {
			cert, err := ca.Issue(tc.opts...)
			require.NoError(t, err, tc.name)
			dev := w.join(tc.addr, xtls.Config{Certificate: cert, Pins: pa})
			c1, c2, err := dialAccept(t, b, dev)
			require.NoError(t, err, tc.name)
			st := c1.State()
			require.Equal(t, xtls.TrustPinned, st.Trust, tc.name)
			require.True(t, st.ViaUserCA, tc.name)
			require.Equal(t, ca.Fingerprint(), st.Pinned, tc.name)
			require.Equal(t, xtls.TrustPinned, c2.State().Trust, tc.name)
			require.False(t, c2.State().ViaUserCA, tc.name)
			exchange(t, c1, c2, 1024)
			c1.Close()
			c2.Close()
		}
		require.Equal(t, []xtls.Fingerprint{ca.Fingerprint()}, pinsOf(t, pb, aliceJID), "still the CA, nothing added")
	})
}

// Certificates that lean on a user CA but do not fit it are identity
// errors, even though bob has pinned alice's CA.
func TestUserCAWrongNames(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		alice := jid.MustParse(aliceJID)
		carol := jid.MustParse("carol@example.com/home")
		aliceCA, err := xtls.NewUserCA(alice)
		require.NoError(t, err)
		carolCA, err := xtls.NewUserCA(carol)
		require.NoError(t, err)
		pb := xtls.NewMemPinStore()
		require.NoError(t, pb.AddPin(alice.Bare(), aliceCA.Fingerprint()))
		require.NoError(t, pb.AddPin(carol.Bare(), aliceCA.Fingerprint()))

		leafForCarol, err := xtls.IssueCertificate(aliceCA.Certificate(), carol)
		require.NoError(t, err)
		aliceUnderCarol, err := xtls.IssueCertificate(carolCA.Certificate(), alice)
		require.NoError(t, err)

		w := newWorld(t)
		b := w.join(bobJID, xtls.Config{Pins: pb})
		for _, tc := range []struct {
			name string
			addr string
			cert tls.Certificate
			want string
		}{
			// alice's device presents a leaf her CA issued for carol.
			{"leaf for another JID under her CA", "alice@example.net/phone", leafForCarol, "no xmppAddr names alice@example.net"},
			// carol presents a leaf for carol under alice's CA, which bob
			// has (wrongly) pinned for carol too: alice's CA speaks only
			// for alice.
			{"her CA used for another JID", "carol@example.com/home", leafForCarol, "user CA names another JID"},
			// alice's device presents a leaf naming alice under carol's CA.
			{"CA for another JID", "alice@example.net/tablet", aliceUnderCarol, "user CA names another JID"},
		} {
			dev := w.join(tc.addr, xtls.Config{Certificate: tc.cert, Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true})
			dev.h.Listen()
			_, err := b.h.Dial(context.Background(), dev.addr)
			var ie *xtls.IdentityError
			require.ErrorAs(t, err, &ie, tc.name)
			require.ErrorContains(t, err, tc.want, tc.name)
		}
	})
}

// A user CA survives a round trip through its PEM file, 0600.
func TestUserCAStore(t *testing.T) {
	ca, err := xtls.NewUserCA(jid.MustParse("alice@example.net/any"), xtls.WithEd25519())
	require.NoError(t, err)
	require.Equal(t, "alice@example.net", ca.JID().String())
	path := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, ca.WriteUserCA(path))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	back, err := xtls.LoadUserCA(path)
	require.NoError(t, err)
	require.Equal(t, ca.Fingerprint(), back.Fingerprint())
	require.Equal(t, ca.JID(), back.JID())

	// A device certificate is not a user CA.
	dev, err := ca.Issue()
	require.NoError(t, err)
	devPath := filepath.Join(t.TempDir(), "dev.pem")
	require.NoError(t, xtls.WriteCertificatePEM(devPath, dev))
	_, err = xtls.LoadUserCA(devPath)
	require.ErrorContains(t, err, "not a user CA")

	// A user CA names a person, not a server.
	_, err = xtls.NewUserCA(jid.MustParse("example.net"))
	require.Error(t, err)
}
