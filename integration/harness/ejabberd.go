package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// EjabberdOptions configures an ejabberd 23.01 server. The zero value is a
// standalone server for "b.localhost" on free ports, with 10 MiB stanza
// limits and no shaper.
type EjabberdOptions struct {
	// Dir is the server's directory (config, certificates, spool, logs), e.g.
	// from t.TempDir(); it is created if missing and left in place by Close.
	// If empty, the harness makes a temporary directory and Close removes it.
	Dir string
	// Domain is the served host; default "b.localhost".
	Domain string
	// C2SPort, S2SPort and DistPort (Erlang distribution, used by
	// ejabberdctl; no epmd runs) are ports on 127.0.0.1; zero picks a free
	// port.
	C2SPort, S2SPort, DistPort int
	// Limits chooses the client limits: Unlimited (default) or StockLimits,
	// the shapers and sizes of Debian's ejabberd.yml (see [StockLimits]).
	Limits Limits
	// StanzaSizeLimit is the c2s listener's max_stanza_size in bytes; default
	// DefaultStanzaSizeLimit, or DebianStanzaSizeLimit with StockLimits
	// (ejabberd's own default is infinity).
	StanzaSizeLimit int
	// S2SStanzaSizeLimit is the s2s listener's max_stanza_size in bytes;
	// default DefaultStanzaSizeLimit, or DebianS2SStanzaSizeLimit with
	// StockLimits.
	S2SStanzaSizeLimit int
	// Shaper, if not nil, shapes every c2s connection (Debian's shipped config
	// has DebianC2SShaper). The s2s listener is never shaped. It cannot be
	// combined with StockLimits.
	Shaper *Shaper
	// Proxy65 runs ejabberd's SOCKS5 bytestream proxy, mod_proxy65, as
	// "proxy.<Domain>" on 127.0.0.1:Proxy65Port (hostname 127.0.0.1 in its
	// streamhost, no shaper, open to every user). mod_disco lists it in the
	// server's disco#items. [Server.Proxy65] reports it.
	Proxy65 bool
	// Proxy65Port is the proxy's port on 127.0.0.1; zero picks a free port.
	Proxy65Port int
	// LogLevel is ejabberd's loglevel: "none", "emergency", "alert",
	// "critical", "error", "warning" ("warn" is accepted too), "notice",
	// "info" (default) or "debug".
	LogLevel string
	// Remotes lists the servers this one federates with. Their SRV records are
	// seeded into the Erlang resolver's cache at boot.
	Remotes []Remote
	// CA issues the server's certificate; nil uses one CA per process.
	CA *CA
	// StartTimeout bounds each Start; default 30 s.
	StartTimeout time.Duration
}

// StartEjabberd writes an ejabberd configuration in opts.Dir and starts the
// server (see [Server.Start]). The caller must call [Server.Close].
//
// The server is started directly with erl, so its PID is beam.smp itself,
// and its Erlang distribution listens on 127.0.0.1:DistPort without epmd.
func StartEjabberd(ctx context.Context, opts EjabberdOptions) (*Server, error) {
	s, err := newEjabberd(opts)
	if err != nil {
		return nil, err
	}
	if err := s.Start(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// newEjabberd prepares an ejabberd server without starting it.
func newEjabberd(opts EjabberdOptions) (*Server, error) {
	if opts.Domain == "" {
		opts.Domain = "b.localhost"
	}
	if err := opts.Limits.check(opts.Shaper); err != nil {
		return nil, err
	}
	size, s2sSize := DefaultStanzaSizeLimit, DefaultStanzaSizeLimit
	if opts.Limits == StockLimits {
		size, s2sSize = DebianStanzaSizeLimit, DebianS2SStanzaSizeLimit
	}
	if opts.StanzaSizeLimit == 0 {
		opts.StanzaSizeLimit = size
	}
	if opts.S2SStanzaSizeLimit == 0 {
		opts.S2SStanzaSizeLimit = s2sSize
	}
	switch opts.LogLevel {
	case "":
		opts.LogLevel = "info"
	case "warn":
		opts.LogLevel = "warning"
	case "none", "emergency", "alert", "critical", "error", "warning", "notice", "info", "debug":
	default:
		return nil, fmt.Errorf("harness: ejabberd log level %q", opts.LogLevel)
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 30 * time.Second
	}
	if opts.Shaper != nil && opts.Shaper.Rate <= 0 {
		return nil, fmt.Errorf("harness: shaper rate %d: must be positive", opts.Shaper.Rate)
	}
	erlLibs, err := ejabberdLibs()
	if err != nil {
		return nil, err
	}
	ca := opts.CA
	if ca == nil {
		if ca, err = defaultCA(); err != nil {
			return nil, err
		}
	}
	ports := []*int{&opts.C2SPort, &opts.S2SPort, &opts.DistPort}
	if opts.Proxy65 {
		ports = append(ports, &opts.Proxy65Port)
	}
	if err := fillPorts(ports...); err != nil {
		return nil, err
	}
	var proxy Proxy65
	if opts.Proxy65 {
		if proxy, err = newProxy65(opts.Domain, opts.Proxy65Port); err != nil {
			return nil, err
		}
	}
	certPEM, keyPEM, err := ca.Issue(opts.Domain)
	if err != nil {
		return nil, err
	}
	cookie := randomHex(12)
	node := fmt.Sprintf("xtls%d@localhost", opts.DistPort)

	dir, own, err := newDir(opts.Dir, "xtls-ejabberd-")
	if err != nil {
		return nil, err
	}
	var (
		spool   = filepath.Join(dir, "spool")
		logs    = filepath.Join(dir, "logs")
		cfgPath = filepath.Join(dir, "ejabberd.yml")
		pemPath = filepath.Join(dir, "certs", opts.Domain+".pem")
	)
	// ejabberdctl sources ejabberdctl.cfg from --config-dir: run as the
	// current user (not su ejabberd), reach the node on its dist port with
	// its cookie, and start no epmd.
	ctlCfg := fmt.Sprintf("EXEC_CMD=as_current_user\nERLANG_NODE=%s\nERL_DIST_PORT=%d\nERL_OPTIONS=\"-setcookie %s\"\n",
		node, opts.DistPort, cookie)
	// The Erlang resolver reads no resolv.conf and no hosts file: lookups that
	// the seeded cache cannot answer fail at once instead of reaching out.
	inetrc := "{lookup,[\"file\",\"native\"]}.\n{host,{127,0,0,1},[\"localhost\"]}.\n{resolv_conf,\"\"}.\n{hosts_file,\"\"}.\n"
	if err := writeFiles(dir, []string{"spool", "logs"}, map[string][]byte{
		"ejabberd.yml":                  []byte(ejabberdConfig(pemPath, opts)),
		"ejabberdctl.cfg":               []byte(ctlCfg),
		"inetrc":                        []byte(inetrc),
		"certs/" + opts.Domain + ".pem": append(certPEM, keyPEM...), // ejabberd wants both in one file
	}); err != nil {
		if own {
			os.RemoveAll(dir)
		}
		return nil, err
	}

	s := &Server{
		kind:         "ejabberd",
		domain:       opts.Domain,
		dir:          dir,
		ownDir:       own,
		c2sPort:      opts.C2SPort,
		s2sPort:      opts.S2SPort,
		ports:        []int{opts.C2SPort, opts.S2SPort, opts.DistPort},
		ca:           ca,
		startTimeout: opts.StartTimeout,
		stdoutPath:   filepath.Join(dir, "stdout.log"),
		// stdout carries what ejabberd.log does, plus start-up failures.
		logPaths: []string{filepath.Join(dir, "stdout.log")},
		limits:   opts.Limits,
		proxy65:  proxy,
	}
	switch {
	case opts.Limits == StockLimits:
		s.c2sRate = DebianC2SShaper.Rate
	case opts.Shaper != nil:
		s.c2sRate = opts.Shaper.Rate
	}
	if opts.Proxy65 {
		s.ports = append(s.ports, opts.Proxy65Port)
	}
	s.command = func() *exec.Cmd {
		// The flags `ejabberdctl foreground` builds, given to erl directly:
		// erl execs erlexec, which execs beam.smp, so the PID is the VM.
		args := []string{
			"-sname", node, "-setcookie", cookie,
			"-kernel", "inet_dist_use_interface", "{127,0,0,1}",
			"-erl_epmd_port", strconv.Itoa(opts.DistPort), "-start_epmd", "false",
			"-mnesia", "dir", strconv.Quote(spool),
		}
		if eval := resolverSeed(opts.Remotes); eval != "" {
			args = append(args, "-eval", eval)
		}
		args = append(args, "-s", "ejabberd", "-noshell", "-noinput")
		cmd := exec.Command("erl", args...)
		cmd.Dir = spool
		cmd.Env = append(os.Environ(),
			"EJABBERD_CONFIG_PATH="+cfgPath,
			"EJABBERD_LOG_PATH="+filepath.Join(logs, "ejabberd.log"),
			"ERL_LIBS="+erlLibs,
			"ERL_INETRC="+filepath.Join(dir, "inetrc"),
			"ERL_CRASH_DUMP="+filepath.Join(logs, "erl_crash.dump"),
			"ERL_CRASH_DUMP_BYTES=0",
		)
		return cmd
	}
	s.addUser = func(ctx context.Context, local, password string) error {
		if s.PID() == 0 {
			return fmt.Errorf("harness: ejabberd AddUser(%s): the server must be running", local)
		}
		cmd := exec.CommandContext(ctx, "ejabberdctl", "--config-dir", dir, "--logs", logs, "--spool", spool,
			"register", local, opts.Domain, password)
		return runTool(ctx, cmd, password)
	}
	return s, nil
}

// resolverSeed returns an Erlang expression that puts each remote's SRV
// record, with a numeric target, into the resolver cache, or "" if there are
// no remotes. ejabberd looks SRV records up with inet_res, which consults that
// cache. res_update_conf comes first: the resolver's first use re-reads its
// configuration and would flush records added before it.
func resolverSeed(remotes []Remote) string {
	if len(remotes) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("inet_db:res_update_conf()")
	for _, r := range remotes {
		fmt.Fprintf(&b, `, ok = inet_db:add_rr(%s, in, srv, 2000000000, {0,0,%d,"127.0.0.1"})`,
			strconv.Quote("_xmpp-server._tcp."+r.Domain), r.S2SPort)
	}
	b.WriteString(".")
	return b.String()
}

// ejabberdConfig returns the ejabberd.yml for a server with its certificate
// and key in pemPath.
func ejabberdConfig(pemPath string, o EjabberdOptions) string {
	q := strconv.Quote // Go's quoting is valid YAML for the strings we write
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Written by the xtls integration harness.")
	w("hosts:")
	w("  - %s", q(o.Domain))
	w("loglevel: %s", o.LogLevel)
	w("certfiles:")
	w("  - %s", q(pemPath))
	c2sShaper, s2sShaper := "none", "none"
	if o.Limits == StockLimits {
		// Debian's ejabberd.yml: its shapers and rules, and an admin ACL
		// that names no user, so every client gets "normal".
		w("shaper:")
		w("  normal:")
		w("    rate: %d", DebianC2SShaper.Rate)
		w("    burst_size: %d", DebianC2SShaper.Burst)
		w("  fast: %d", EjabberdStockS2SRate)
		w("shaper_rules:")
		w("  max_user_sessions: %d", EjabberdStockMaxUserSessions)
		w("  c2s_shaper:")
		w("    none: admin")
		w("    normal: all")
		w("  s2s_shaper: fast")
		c2sShaper, s2sShaper = "c2s_shaper", ""
	}
	if o.Shaper != nil {
		w("shaper:")
		w("  xtls_c2s:")
		w("    rate: %d", o.Shaper.Rate)
		if o.Shaper.Burst > 0 {
			w("    burst_size: %d", o.Shaper.Burst)
		}
		w("shaper_rules:")
		w("  xtls_c2s_shaper: xtls_c2s")
		c2sShaper = "xtls_c2s_shaper"
	}
	w("listen:")
	w("  -")
	w("    port: %d", o.C2SPort)
	w("    ip: \"127.0.0.1\"") // the default is 0.0.0.0
	w("    module: ejabberd_c2s")
	w("    starttls_required: true")
	w("    max_stanza_size: %d", o.StanzaSizeLimit)
	w("    shaper: %s", c2sShaper)
	w("  -")
	w("    port: %d", o.S2SPort)
	w("    ip: \"127.0.0.1\"")
	w("    module: ejabberd_s2s_in")
	w("    max_stanza_size: %d", o.S2SStanzaSizeLimit)
	if s2sShaper != "" { // with StockLimits, s2s_shaper applies, as in Debian's file
		w("    shaper: %s", s2sShaper)
	}
	w("s2s_use_starttls: required")
	w("outgoing_s2s_families: [ipv4]")
	w("auth_method: internal")
	w("auth_password_format: scram")
	w("acl:")
	w("  local:")
	w("    user_regexp: \"\"")
	if o.Limits == StockLimits {
		w("  admin:")
		w("    user:")
		w("      - \"\"")
	}
	w("access_rules:")
	w("  local:")
	w("    allow: local")
	w("modules:")
	w("  mod_disco: {}")
	w("  mod_ping: {}")
	w("  mod_roster: {}")
	w("  mod_s2s_dialback: {}")
	if o.Proxy65 {
		w("  mod_proxy65:")
		w("    host: %s", q(proxyHost(o.Domain)))
		w("    ip: \"127.0.0.1\"")
		w("    port: %d", o.Proxy65Port)
		w("    hostname: \"127.0.0.1\"")
	}
	return b.String()
}

// ejabberdLibs returns the ERL_LIBS directory of the installed ejabberd: the
// value ejabberdctl itself sets, or else the parent of an ejabberd-* library
// directory under /usr/lib.
var ejabberdLibs = sync.OnceValues(func() (string, error) {
	if ctl, err := exec.LookPath("ejabberdctl"); err == nil {
		if script, err := os.ReadFile(ctl); err == nil {
			m := regexp.MustCompile(`(?m)^ERL_LIBS='?([^'\n]+)'?$`).FindSubmatch(script)
			if m != nil {
				return string(m[1]), nil
			}
		}
	}
	matches, _ := filepath.Glob("/usr/lib/*/ejabberd-*/ebin")
	if len(matches) == 0 {
		matches, _ = filepath.Glob("/usr/lib/ejabberd-*/ebin")
	}
	if len(matches) == 0 {
		return "", fmt.Errorf("harness: ejabberd is not installed (no ejabberdctl, no ejabberd-*/ebin under /usr/lib); run scripts/install-deps.sh")
	}
	return filepath.Dir(filepath.Dir(matches[0])), nil
})

// randomHex returns n random bytes in hexadecimal.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
