package cli

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Profile is what a profile file says about an account. A profile file
// has one "name = value" line per setting; blank lines and lines starting
// with # are ignored. A relative file name is relative to the profile's
// directory.
//
//	# ~/.config/xtls/default.profile
//	jid              = alice@example.net/laptop
//	server           = xmpp.example.net:5222
//	ca               = my-server-ca.pem
//	password-command = pass show xmpp/alice
type Profile struct {
	JID             string // jid: our account, user@domain[/resource]
	Server          string // server: host[:port] of the server's client port
	CAFile          string // ca: PEM file of CAs for the server's certificate
	PasswordFile    string // password-file: a file whose first line is the password
	PasswordCommand string // password-command: a shell command that prints the password
	CertFile        string // cert: our certificate and key (default: made in the state directory)
}

// ReadProfile reads the profile file at path.
func ReadProfile(path string) (Profile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Profile{}, err
	}
	var p Profile
	dir := filepath.Dir(path)
	file := func(v string) string {
		if v == "" || filepath.IsAbs(v) {
			return v
		}
		return filepath.Join(dir, v)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			return Profile{}, fmt.Errorf("%s:%d: want name = value", path, n)
		}
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		switch name {
		case "jid":
			p.JID = value
		case "server":
			p.Server = value
		case "ca":
			p.CAFile = file(value)
		case "password-file":
			p.PasswordFile = file(value)
		case "password-command":
			p.PasswordCommand = value
		case "cert":
			p.CertFile = file(value)
		default:
			return Profile{}, fmt.Errorf("%s:%d: unknown setting %q (jid, server, ca, password-file, password-command, cert)", path, n, name)
		}
	}
	return p, sc.Err()
}
