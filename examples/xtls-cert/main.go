// Command xtls-cert makes the certificates that XTLS peers present: a key
// and a certificate naming a bare JID in an id-on-xmppAddr subjectAltName,
// written with the key to one PEM file (mode 0600), and shows existing ones.
// It prints the SHA-256 fingerprint of the public key in the form people
// compare out of band (read aloud, or side by side on two screens), the
// names and the validity.
//
// A self-signed certificate for one device (ECDSA P-256, valid a year):
//
//	xtls-cert -jid alice@example.net -o alice.pem
//	xtls-cert -jid alice@example.net -o alice.pem -ed25519 -days 90
//
// A person's own CA (xtls.UserCA), then a certificate for each of their
// devices, issued by it. A peer that pins one device pins the CA's key, so
// the person's other devices are trusted without pairing again:
//
//	xtls-cert -user-ca -jid alice@example.net -o alice-ca.pem
//	xtls-cert -ca alice-ca.pem -jid alice@example.net -o alice-phone.pem
//
// A certificate issued by an organisation's CA (a PEM file with the CA's
// certificate and key); peers trust it with xtls-cat -peer-ca:
//
//	xtls-cert -ca corp-ca.pem -jid bob@example.org -o bob.pem
//
// Showing a PEM file (a certificate alone will do):
//
//	xtls-cert -show alice.pem
//
// The file given to -o, by default the bare JID followed by .pem (-ca.pem
// for a user CA), must not exist yet: a key is never overwritten.
//
// Exit status:
//
//	0  success
//	1  a file cannot be read or written, exists already, or the CA cannot
//	   issue
//	2  bad usage: flags, a bad JID, a user CA asked for another JID
package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/xtls"
)

// Exit codes of run.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole program: it parses args, makes or shows a certificate,
// and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	fset := flag.NewFlagSet("xtls-cert", flag.ContinueOnError)
	fset.SetOutput(stderr)
	var (
		addr    = fset.String("jid", "", "the bare `JID` the certificate names (user@domain)")
		out     = fset.String("o", "", "output PEM `file` (default: JID.pem, or JID-ca.pem with -user-ca)")
		ed      = fset.Bool("ed25519", false, "make an Ed25519 key instead of ECDSA P-256")
		days    = fset.Int("days", 0, "validity in days (default: 365, or 3650 with -user-ca)")
		caFile  = fset.String("ca", "", "issue the certificate with the CA in this PEM `file` (certificate and key): a user CA or an organisation's")
		userCA  = fset.Bool("user-ca", false, "make a person's own CA for -jid instead of a device certificate")
		showArg = fset.String("show", "", "show the certificates in this PEM `file` and make nothing")
	)
	fset.Usage = func() {
		fmt.Fprintln(stderr, "usage: xtls-cert -jid user@domain [-o file] [-ed25519] [-days N] [-ca ca.pem | -user-ca]")
		fmt.Fprintln(stderr, "       xtls-cert -show file.pem")
		fset.PrintDefaults()
	}
	if err := fset.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "xtls-cert: "+format+"\n", a...)
		fset.Usage()
		return exitUsage
	}
	failed := func(err error) int {
		fmt.Fprintln(stderr, "xtls-cert:", err)
		return exitFailed
	}
	if fset.NArg() > 0 {
		return usage("unexpected argument %q", fset.Arg(0))
	}

	if *showArg != "" {
		var others []string
		fset.Visit(func(f *flag.Flag) {
			if f.Name != "show" {
				others = append(others, "-"+f.Name)
			}
		})
		if len(others) > 0 {
			return usage("-show takes no other flag (%s)", strings.Join(others, " "))
		}
		if err := show(stdout, *showArg); err != nil {
			return failed(err)
		}
		return exitOK
	}

	if *addr == "" {
		return usage("-jid is required")
	}
	j, err := jid.Parse(*addr)
	if err != nil {
		return usage("-jid %q: %v", *addr, err)
	}
	if j.Resourcepart() != "" {
		fmt.Fprintf(stderr, "xtls-cert: certificates name the bare JID: /%s is left out\n", j.Resourcepart())
		j = j.Bare()
	}
	if *userCA && *caFile != "" {
		return usage("-user-ca makes a CA; -ca issues with one: give one of them")
	}
	if *userCA && j.Localpart() == "" {
		return usage("-user-ca: a user CA names a person, user@domain, not %q", j)
	}
	if *days < 0 {
		return usage("-days %d: want a positive number", *days)
	}
	var opts []xtls.CertOption
	if *ed {
		opts = append(opts, xtls.WithEd25519())
	}
	if *days > 0 {
		opts = append(opts, xtls.WithValidity(time.Duration(*days)*24*time.Hour))
	}
	path := *out
	if path == "" {
		path = j.String() + ".pem"
		if *userCA {
			path = j.String() + "-ca.pem"
		}
	}
	// Never overwrite a key. (WriteCertificatePEM replaces a file
	// atomically, so this check is what keeps an old key.)
	if _, err := os.Lstat(path); err == nil {
		return failed(fmt.Errorf("%s exists; remove it first, or choose another -o", path))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return failed(err)
	}

	var cert tls.Certificate
	what := "certificate and private key"
	switch {
	case *userCA:
		ca, err := xtls.NewUserCA(j, opts...)
		if err != nil {
			return failed(err)
		}
		if err := ca.WriteUserCA(path); err != nil {
			return failed(err)
		}
		cert = ca.Certificate()
		what = "user CA certificate and private key"
	case *caFile != "":
		cert, err = issue(*caFile, j, opts)
		if errors.Is(err, errWrongUser) {
			fmt.Fprintln(stderr, "xtls-cert:", err)
			return exitUsage
		}
		if err != nil {
			return failed(err)
		}
		if err := xtls.WriteCertificatePEM(path, cert); err != nil {
			return failed(err)
		}
	default:
		cert, err = xtls.GenerateCertificate(j, opts...)
		if err != nil {
			return failed(err)
		}
		if err := xtls.WriteCertificatePEM(path, cert); err != nil {
			return failed(err)
		}
	}
	chain, err := parseChain(cert.Certificate)
	if err != nil {
		return failed(err)
	}
	fmt.Fprintf(stdout, "wrote %s: %s (mode 0600; keep it secret)\n\n", path, what)
	describe(stdout, chain, time.Now())
	return exitOK
}

// errWrongUser is returned by issue for a user CA asked to issue a
// certificate for someone else.
var errWrongUser = errors.New("a user CA issues certificates only for its own JID")

// issue makes a certificate for addr with the CA in file: with it as a user
// CA if it is one (then addr must be its JID), as an organisation's CA
// otherwise.
func issue(file string, addr jid.JID, opts []xtls.CertOption) (tls.Certificate, error) {
	if ca, err := xtls.LoadUserCA(file); err == nil {
		if !ca.JID().Equal(addr) {
			return tls.Certificate{}, fmt.Errorf("-ca %s is the user CA of %s: %w", file, ca.JID(), errWrongUser)
		}
		return ca.Issue(opts...)
	}
	ca, err := xtls.LoadCertificatePEM(file)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("-ca: %w", err)
	}
	c, err := xtls.IssueCertificate(ca, addr, opts...)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("-ca %s: %w", file, err)
	}
	return c, nil
}

// parseChain parses DER certificates.
func parseChain(ders [][]byte) ([]*x509.Certificate, error) {
	chain := make([]*x509.Certificate, 0, len(ders))
	for _, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		chain = append(chain, c)
	}
	return chain, nil
}

// show prints the certificates of a PEM file, and whether it holds a
// private key.
func show(w io.Writer, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var (
		ders [][]byte
		key  string
	)
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		switch {
		case b.Type == "CERTIFICATE":
			ders = append(ders, b.Bytes)
		case strings.HasSuffix(b.Type, "PRIVATE KEY"):
			key = b.Type
		}
	}
	if len(ders) == 0 {
		return fmt.Errorf("%s holds no PEM certificate", path)
	}
	chain, err := parseChain(ders)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if key != "" {
		fmt.Fprintf(w, "%s: %d certificate(s) and a private key (%s)\n\n", path, len(chain), key)
	} else {
		fmt.Fprintf(w, "%s: %d certificate(s), no private key\n\n", path, len(chain))
	}
	describe(w, chain, time.Now())
	return nil
}

// describe prints each certificate of chain, leaf first, and then the key
// that peers pin.
func describe(w io.Writer, chain []*x509.Certificate, now time.Time) {
	var pinned *x509.Certificate // the user CA, if the chain has one
	for i, c := range chain {
		head := "certificate"
		if len(chain) > 1 {
			head = fmt.Sprintf("certificate %d of %d", i+1, len(chain))
		}
		userCA := userCAOf(c)
		if userCA != "" {
			head += ": user CA of " + userCA
			if pinned == nil {
				pinned = c
			}
		} else if c.IsCA {
			head += ": CA"
		}
		fmt.Fprintln(w, head)
		field(w, "subject", c.Subject.String())
		names, err := xtls.XMPPAddrs(c)
		switch {
		case err != nil:
			field(w, "xmppAddr", "unreadable: "+err.Error())
		case len(names) > 0:
			field(w, "xmppAddr", strings.Join(names, ", "))
		}
		if len(c.DNSNames) > 0 {
			field(w, "dNSName", strings.Join(c.DNSNames, ", "))
		}
		issuer := c.Issuer.String()
		if selfSigned(c) {
			issuer += " (self-signed)"
		}
		field(w, "issuer", issuer)
		field(w, "key", keyName(c))
		field(w, "valid", validity(c, now))
		ca := "no"
		if c.IsCA {
			ca = "yes: it may sign certificates"
		}
		field(w, "CA", ca)
		field(w, "fingerprint", xtls.SPKIFingerprint(c).String())
		fmt.Fprintln(w)
	}
	leaf := chain[0]
	switch {
	case pinned != nil && pinned != leaf:
		fmt.Fprintf(w, "Peers that pin %s pin the user CA's key:\n  %s\n", userCAOf(pinned), xtls.SPKIFingerprint(pinned))
	case pinned != nil:
		fmt.Fprintf(w, "Peers pin this CA's key for %s once they trust one of its devices:\n  %s\n", userCAOf(pinned), xtls.SPKIFingerprint(pinned))
	default:
		fmt.Fprintf(w, "Peers pin this key (SHA-256 of the public key); compare it out of band:\n  %s\n", xtls.SPKIFingerprint(leaf))
	}
}

// userCAOf returns the JID c speaks for if it is a user CA (a CA naming
// one bare JID), or "".
func userCAOf(c *x509.Certificate) string {
	if !c.IsCA {
		return ""
	}
	names, err := xtls.XMPPAddrs(c)
	if err != nil || len(names) != 1 {
		return ""
	}
	j, err := jid.Parse(names[0])
	if err != nil || j.Localpart() == "" || j.Resourcepart() != "" {
		return ""
	}
	return j.String()
}

// selfSigned reports whether c is signed by its own key.
func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) &&
		c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

// field prints one line of a certificate's description.
func field(w io.Writer, name, value string) {
	fmt.Fprintf(w, "  %-13s %s\n", name+":", value)
}

// keyName names the type and size of c's public key.
func keyName(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d bits", k.N.BitLen())
	}
	return c.PublicKeyAlgorithm.String()
}

// validity describes c's validity period as of now.
func validity(c *x509.Certificate, now time.Time) string {
	const layout = "2006-01-02 15:04 MST"
	s := fmt.Sprintf("%s to %s", c.NotBefore.UTC().Format(layout), c.NotAfter.UTC().Format(layout))
	switch {
	case now.Before(c.NotBefore):
		return s + " (NOT YET VALID)"
	case now.After(c.NotAfter):
		return s + " (EXPIRED)"
	}
	days := (c.NotAfter.Sub(now) + 12*time.Hour) / (24 * time.Hour)
	return s + fmt.Sprintf(" (%d days left)", days)
}
