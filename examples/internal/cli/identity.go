package cli

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/xtls"
)

// Identity is what a program keeps between runs for one account: its
// certificate and key, and the keys of the peers it trusts.
type Identity struct {
	// Cert is our certificate and key.
	Cert tls.Certificate
	// CertFile is where Cert was read from or written to.
	CertFile string
	// Created says that Cert was made by this run (there was none yet).
	Created bool
	// Pins holds the peers' keys; PinFile is its path.
	Pins    *xtls.FilePinStore
	PinFile string
}

// DefaultDir returns where a program named app keeps its state unless told
// otherwise: app under the user's configuration directory
// (os.UserConfigDir, e.g. ~/.config/app), or .app in the working directory
// if there is none.
func DefaultDir(app string) string {
	d, err := os.UserConfigDir()
	if err != nil {
		return "." + app
	}
	return filepath.Join(d, app)
}

// OpenIdentity opens the state of the account self under dir: the
// directory dir/BARE-JID holds cert.pem (our certificate and key, made on
// first use) and pins.json (an xtls.FilePinStore), and is created (mode
// 0700) if needed. certFile, if not empty, replaces cert.pem: it is a PEM
// file as xtls-cert writes it, and must name the bare JID of self.
func OpenIdentity(dir string, self jid.JID, certFile string) (*Identity, error) {
	bare := self.Bare()
	acct := filepath.Join(dir, bare.String())
	if err := os.MkdirAll(acct, 0o700); err != nil {
		return nil, err
	}
	id := &Identity{PinFile: filepath.Join(acct, "pins.json"), CertFile: certFile}
	var err error
	if id.Pins, err = xtls.NewFilePinStore(id.PinFile); err != nil {
		return nil, err
	}
	if certFile == "" {
		id.CertFile = filepath.Join(acct, "cert.pem")
		id.Cert, err = xtls.LoadCertificatePEM(id.CertFile)
		if errors.Is(err, fs.ErrNotExist) {
			if id.Cert, err = xtls.GenerateCertificate(bare); err != nil {
				return nil, err
			}
			if err := xtls.WriteCertificatePEM(id.CertFile, id.Cert); err != nil {
				return nil, err
			}
			id.Created = true
			return id, nil
		}
		if err != nil {
			return nil, err
		}
	} else if id.Cert, err = xtls.LoadCertificatePEM(certFile); err != nil {
		return nil, err
	}
	names, err := xtls.XMPPAddrs(id.Cert.Leaf)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", id.CertFile, err)
	}
	if !slices.ContainsFunc(names, func(n string) bool {
		j, err := jid.Parse(n)
		return err == nil && j.Equal(bare)
	}) {
		return nil, fmt.Errorf("%s names %q, not %s", id.CertFile, names, bare)
	}
	return id, nil
}

// Fingerprint returns the fingerprint of our key, the one peers compare.
func (id *Identity) Fingerprint() xtls.Fingerprint { return xtls.SPKIFingerprint(id.Cert.Leaf) }
