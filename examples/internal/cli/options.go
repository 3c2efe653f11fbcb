package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"mellium.im/xmpp/jid"
)

// DirEnv is the environment variable that moves the state directory.
const DirEnv = "XTLS_DIR"

// DefaultTimeout bounds logging in unless -timeout says otherwise.
const DefaultTimeout = 30 * time.Second

// Options are the flags that every networked program takes, with the same
// meaning everywhere. Flags given on the command line win over the profile.
type Options struct {
	// Profile names a profile file: NAME means DIR/NAME.profile, a name
	// with a slash is a path. Empty: DIR/default.profile if it exists.
	Profile string
	// Dir is the state directory, shared by every program: the profiles,
	// and per account (DIR/BARE-JID/) our certificate and the pinned keys.
	Dir string

	JID             string
	Server          string
	CAFile          string
	Password        string
	PasswordFile    string
	PasswordCommand string
	CertFile        string

	// Verbose logs XTLS events on standard error; Quiet prints nothing
	// but errors.
	Verbose, Quiet bool
	// Timeout bounds logging in.
	Timeout time.Duration

	profileSet bool // -profile was given
}

// DefaultStateDir is the state directory unless -dir says otherwise:
// $XTLS_DIR, or xtls in the user's configuration directory (e.g.
// ~/.config/xtls).
func DefaultStateDir() string {
	if d := os.Getenv(DirEnv); d != "" {
		return d
	}
	return DefaultDir("xtls")
}

// Flags defines the common flags on fs.
func (o *Options) Flags(fs *flag.FlagSet) {
	fs.StringVar(&o.Profile, "profile", "", "profile `name` (DIR/NAME.profile) or file: jid, server, ca, password-file, password-command, cert (default: DIR/default.profile if it exists)")
	fs.StringVar(&o.Dir, "dir", DefaultStateDir(), "state `directory` shared by the xtls tools: profiles, and per account our certificate and the pinned keys ($"+DirEnv+")")
	fs.StringVar(&o.JID, "jid", "", "our account, user@domain[/resource]")
	fs.StringVar(&o.Server, "server", "", "server `host:port` (default: the JID's domain, port 5222)")
	fs.StringVar(&o.CAFile, "ca", "", "PEM `file` of CAs for the server's certificate (default: the system's roots)")
	fs.StringVar(&o.Password, "password", "", "password (visible to other users: prefer $"+PasswordEnv+", -password-file or -password-command)")
	fs.StringVar(&o.PasswordFile, "password-file", "", "`file` whose first line is the password")
	fs.StringVar(&o.PasswordCommand, "password-command", "", "shell `command` that prints the password")
	fs.StringVar(&o.CertFile, "cert", "", "our certificate and key, a PEM `file` from xtls-cert (default: DIR/BARE-JID/cert.pem, made on first use)")
	fs.BoolVar(&o.Verbose, "v", false, "verbose: log XTLS events on standard error")
	fs.BoolVar(&o.Quiet, "q", false, "quiet: print only errors")
	fs.DurationVar(&o.Timeout, "timeout", DefaultTimeout, "give up logging in after this `duration`")
}

// Resolve reads the profile and fills in what the command line left
// empty. It fails if a profile that was asked for cannot be read.
func (o *Options) Resolve() error {
	if o.Dir == "" {
		o.Dir = DefaultStateDir()
	}
	path, asked := o.profilePath()
	p, err := ReadProfile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !asked:
	case err != nil:
		return fmt.Errorf("profile: %w", err)
	}
	o.profileSet = asked
	fill := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	fill(&o.JID, p.JID)
	fill(&o.Server, p.Server)
	fill(&o.CAFile, p.CAFile)
	fill(&o.CertFile, p.CertFile)
	// A password on the command line or in the environment wins over the
	// profile's way of getting one.
	if o.Password == "" && o.PasswordFile == "" && o.PasswordCommand == "" && os.Getenv(PasswordEnv) == "" {
		o.PasswordFile, o.PasswordCommand = p.PasswordFile, p.PasswordCommand
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	return nil
}

// profilePath returns the profile file to read and whether it was asked
// for (a missing default profile is no error).
func (o *Options) profilePath() (string, bool) {
	switch {
	case o.Profile == "":
		return filepath.Join(o.Dir, "default.profile"), false
	case strings.ContainsRune(o.Profile, os.PathSeparator) || strings.ContainsRune(o.Profile, '/'):
		return o.Profile, true
	}
	return filepath.Join(o.Dir, o.Profile+".profile"), true
}

// Self returns our account, checked: -jid (or the profile's jid) is
// required and must have a local part.
func (o *Options) Self() (jid.JID, error) {
	if o.JID == "" {
		return jid.JID{}, errors.New("-jid is required (or jid in the profile)")
	}
	j, err := jid.Parse(o.JID)
	if err != nil || j.Localpart() == "" {
		return jid.JID{}, fmt.Errorf("-jid %q: want user@domain[/resource]", o.JID)
	}
	return j, nil
}

// Login returns how to log in.
func (o *Options) Login() Login {
	return Login{Server: o.Server, JID: o.JID, Password: o.Password, PasswordFile: o.PasswordFile,
		PasswordCommand: o.PasswordCommand, CAFile: o.CAFile, Timeout: o.Timeout}
}

// OpenIdentity opens our certificate and pins in the state directory (see
// the package function OpenIdentity).
func (o *Options) OpenIdentity(self jid.JID) (*Identity, error) {
	return OpenIdentity(o.Dir, self, o.CertFile)
}

// Logger returns the logger for XTLS events: w with -v, nil otherwise.
func (o *Options) Logger(w io.Writer) *slog.Logger {
	if !o.Verbose {
		return nil
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	}))
}

// StateFlags returns the flags that make another program use the same
// state and account as this one: for commands printed to the user.
func (o *Options) StateFlags() []string {
	var f []string
	if o.Dir != DefaultStateDir() {
		f = append(f, "-dir", o.Dir)
	}
	if o.profileSet {
		f = append(f, "-profile", o.Profile)
	}
	if self, err := o.Self(); err == nil {
		f = append(f, "-jid", self.Bare().String())
	}
	return f
}

// ShellCommand writes a command line for people to copy: the words are quoted
// for a POSIX shell where needed.
func ShellCommand(words ...string) string {
	q := make([]string, len(words))
	for i, w := range words {
		if w != "" && strings.IndexFunc(w, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./-_", r))
		}) < 0 {
			q[i] = w
			continue
		}
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
