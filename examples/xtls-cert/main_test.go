package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/xtls"
)

// xtlsCert runs the program and fails the test unless it exits with want.
func xtlsCert(t *testing.T, want int, args ...string) (stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	if code := run(args, &o, &e); code != want {
		t.Fatalf("xtls-cert %q: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, code, want, &o, &e)
	}
	return o.String(), e.String()
}

// fingerprints returns the fingerprints printed on the "fingerprint:"
// lines of out, in order, and the one printed last, for pinning.
func fingerprints(t *testing.T, out string) (each []xtls.Fingerprint, pin xtls.Fingerprint) {
	t.Helper()
	re := regexp.MustCompile(`([0-9A-F]{4} ){15}[0-9A-F]{4}`)
	for line := range strings.SplitSeq(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "fingerprint:"); ok {
			fp, err := xtls.ParseFingerprint(v)
			if err != nil {
				t.Fatalf("bad fingerprint line %q: %v", line, err)
			}
			each = append(each, fp)
		}
	}
	all := re.FindAllString(out, -1)
	if len(each) == 0 || len(all) == 0 {
		t.Fatalf("no fingerprint in:\n%s", out)
	}
	pin, err := xtls.ParseFingerprint(all[len(all)-1])
	if err != nil {
		t.Fatal(err)
	}
	return each, pin
}

// checkFile checks that path has mode 0600 and loads it.
func checkFile(t *testing.T, path string) []byte {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, m)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestGenerate makes a self-signed certificate and checks the file and
// what was printed against the certificate itself.
func TestGenerate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alice.pem")
	out, errOut := xtlsCert(t, exitOK, "-jid", "alice@example.net/phone", "-o", path)
	checkFile(t, path)
	c, err := xtls.LoadCertificatePEM(path)
	if err != nil {
		t.Fatal(err)
	}
	names, err := xtls.XMPPAddrs(c.Leaf)
	if err != nil || !slices.Equal(names, []string{"alice@example.net"}) {
		t.Errorf("xmppAddrs %q (%v), want the bare JID", names, err)
	}
	if _, ok := c.Leaf.PublicKey.(*ecdsa.PublicKey); !ok || len(c.Certificate) != 1 {
		t.Errorf("key %T, chain of %d: want ECDSA, self-signed", c.Leaf.PublicKey, len(c.Certificate))
	}
	if d := time.Until(c.Leaf.NotAfter); d < 364*24*time.Hour || d > 366*24*time.Hour {
		t.Errorf("valid for %v more, want a year", d)
	}
	each, pin := fingerprints(t, out)
	want := xtls.SPKIFingerprint(c.Leaf)
	if len(each) != 1 || each[0] != want || pin != want {
		t.Errorf("printed %v, then %s to pin; the certificate's is %s", each, pin, want)
	}
	for _, s := range []string{
		"wrote " + path,
		"xmppAddr:     alice@example.net\n",
		"key:          ECDSA P-256\n",
		"issuer:       CN=alice@example.net (self-signed)\n",
		"(365 days left)",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
	if !strings.Contains(errOut, "/phone is left out") {
		t.Errorf("no word that the resource is dropped: %q", errOut)
	}

	// -show prints the same fingerprint, and says the key is there.
	shown, _ := xtlsCert(t, exitOK, "-show", path)
	if each, _ := fingerprints(t, shown); len(each) != 1 || each[0] != want {
		t.Errorf("-show printed %v, want %s", each, want)
	}
	if !strings.Contains(shown, "1 certificate(s) and a private key") {
		t.Errorf("-show does not mention the key:\n%s", shown)
	}
}

// TestEd25519Days checks -ed25519 and -days, and the default file name.
func TestEd25519Days(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	out, _ := xtlsCert(t, exitOK, "-jid", "bob@example.org", "-ed25519", "-days", "30")
	path := filepath.Join(dir, "bob@example.org.pem")
	checkFile(t, path)
	c, err := xtls.LoadCertificatePEM(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Leaf.PublicKey.(ed25519.PublicKey); !ok {
		t.Errorf("key %T, want Ed25519", c.Leaf.PublicKey)
	}
	if d := time.Until(c.Leaf.NotAfter); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("valid for %v more, want 30 days", d)
	}
	if each, _ := fingerprints(t, out); each[0] != xtls.SPKIFingerprint(c.Leaf) {
		t.Errorf("printed %s, the certificate's is %s", each[0], xtls.SPKIFingerprint(c.Leaf))
	}
	if !strings.Contains(out, "key:          Ed25519\n") || !strings.Contains(out, "(30 days left)") {
		t.Errorf("output:\n%s", out)
	}
}

// TestShowCertificateOnly shows a file with a certificate and no key.
func TestShowCertificateOnly(t *testing.T) {
	c, err := xtls.GenerateCertificate(jid.MustParse("carol@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "carol.crt")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := xtlsCert(t, exitOK, "-show", path)
	if each, pin := fingerprints(t, out); each[0] != xtls.SPKIFingerprint(c.Leaf) || pin != each[0] {
		t.Errorf("printed %v, the certificate's is %s", each, xtls.SPKIFingerprint(c.Leaf))
	}
	if !strings.Contains(out, "1 certificate(s), no private key") || !strings.Contains(out, "xmppAddr:     carol@example.com") {
		t.Errorf("output:\n%s", out)
	}

	empty := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(empty, []byte("nothing here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut := xtlsCert(t, exitFailed, "-show", empty); !strings.Contains(errOut, "no PEM certificate") {
		t.Errorf("stderr: %s", errOut)
	}
	xtlsCert(t, exitFailed, "-show", filepath.Join(t.TempDir(), "missing.pem"))
}

// TestIssueFromCA issues a certificate with an organisation's CA: the
// chain is [leaf, CA], the leaf is signed by the CA and names the JID.
func TestIssueFromCA(t *testing.T) {
	dir := t.TempDir()
	ca, err := xtls.GenerateCA("Example Corp CA")
	if err != nil {
		t.Fatal(err)
	}
	caPath := filepath.Join(dir, "corp-ca.pem")
	if err := xtls.WriteCertificatePEM(caPath, ca); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "bob.pem")
	out, _ := xtlsCert(t, exitOK, "-ca", caPath, "-jid", "bob@example.org", "-o", path)
	checkFile(t, path)
	c, err := xtls.LoadCertificatePEM(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Certificate) != 2 {
		t.Fatalf("chain of %d, want leaf and CA", len(c.Certificate))
	}
	if err := c.Leaf.CheckSignatureFrom(ca.Leaf); err != nil {
		t.Errorf("leaf not signed by the CA: %v", err)
	}
	if names, _ := xtls.XMPPAddrs(c.Leaf); !slices.Equal(names, []string{"bob@example.org"}) {
		t.Errorf("xmppAddrs %q", names)
	}
	each, pin := fingerprints(t, out)
	if len(each) != 2 || each[0] != xtls.SPKIFingerprint(c.Leaf) || each[1] != xtls.SPKIFingerprint(ca.Leaf) {
		t.Errorf("printed %v; leaf %s, CA %s", each, xtls.SPKIFingerprint(c.Leaf), xtls.SPKIFingerprint(ca.Leaf))
	}
	if pin != each[0] {
		t.Errorf("pin %s, want the leaf's key: an organisation's CA is no user CA", pin)
	}
	if !strings.Contains(out, "certificate 2 of 2: CA\n") || !strings.Contains(out, "issuer:       CN=Example Corp CA\n") {
		t.Errorf("output:\n%s", out)
	}
}

// TestUserCA makes a person's CA, then a device certificate with it: the
// device's chain ends in the CA, and peers pin the CA's key. The CA issues
// for nobody else.
func TestUserCA(t *testing.T) {
	dir := t.TempDir()
	caPath := filepath.Join(dir, "alice-ca.pem")
	out, _ := xtlsCert(t, exitOK, "-user-ca", "-jid", "alice@example.net", "-o", caPath)
	checkFile(t, caPath)
	ca, err := xtls.LoadUserCA(caPath)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.JID().Equal(jid.MustParse("alice@example.net")) {
		t.Errorf("user CA of %s", ca.JID())
	}
	if each, pin := fingerprints(t, out); each[0] != ca.Fingerprint() || pin != ca.Fingerprint() {
		t.Errorf("printed %v and %s, the CA's is %s", each, pin, ca.Fingerprint())
	}
	if d := time.Until(ca.Certificate().Leaf.NotAfter); d < 3649*24*time.Hour {
		t.Errorf("user CA valid for %v more, want ten years", d)
	}

	phone := filepath.Join(dir, "phone.pem")
	out, _ = xtlsCert(t, exitOK, "-ca", caPath, "-jid", "alice@example.net", "-o", phone)
	checkFile(t, phone)
	c, err := xtls.LoadCertificatePEM(phone)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Certificate) != 2 || c.Leaf.CheckSignatureFrom(ca.Certificate().Leaf) != nil {
		t.Errorf("device chain of %d, or not signed by the user CA", len(c.Certificate))
	}
	each, pin := fingerprints(t, out)
	if each[0] != xtls.SPKIFingerprint(c.Leaf) || pin != ca.Fingerprint() {
		t.Errorf("printed device %s, pin %s; want %s, and the CA's %s", each[0], pin, xtls.SPKIFingerprint(c.Leaf), ca.Fingerprint())
	}
	if !strings.Contains(out, "certificate 2 of 2: user CA of alice@example.net") {
		t.Errorf("output:\n%s", out)
	}

	other := filepath.Join(dir, "mallory.pem")
	if _, errOut := xtlsCert(t, exitUsage, "-ca", caPath, "-jid", "mallory@example.net", "-o", other); !strings.Contains(errOut, "only for its own JID") {
		t.Errorf("stderr: %s", errOut)
	}
	if _, err := os.Stat(other); err == nil {
		t.Error("a certificate was written for another JID")
	}
}

// TestBadUsage checks bad JIDs and flags: exit 2, no file written.
func TestBadUsage(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.pem")
	for _, args := range [][]string{
		{},
		{"-o", out},
		{"-jid", "", "-o", out},
		{"-jid", "@example.net", "-o", out},
		{"-jid", "alice@", "-o", out},
		{"-jid", "alice@exa mple.net", "-o", out},
		{"-jid", "example.net", "-user-ca", "-o", out},
		{"-jid", "alice@example.net", "-user-ca", "-ca", "ca.pem", "-o", out},
		{"-jid", "alice@example.net", "-days", "-1", "-o", out},
		{"-jid", "alice@example.net", "-o", out, "extra"},
		{"-jid", "alice@example.net", "-show", out},
		{"-nosuchflag"},
	} {
		var o, e bytes.Buffer
		if code := run(args, &o, &e); code != exitUsage {
			t.Errorf("%q: exit %d, want %d\n%s", args, code, exitUsage, &e)
		}
		if e.Len() == 0 {
			t.Errorf("%q: nothing said", args)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a file was written")
	}
}

// TestNoOverwrite checks that an existing file, a key maybe, is kept.
func TestNoOverwrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alice.pem")
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut := xtlsCert(t, exitFailed, "-jid", "alice@example.net", "-o", path)
	if !strings.Contains(errOut, "exists") {
		t.Errorf("stderr: %s", errOut)
	}
	if data, _ := os.ReadFile(path); string(data) != "precious" {
		t.Errorf("file overwritten: %q", data)
	}
}
