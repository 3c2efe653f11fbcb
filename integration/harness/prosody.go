package harness

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ProsodyOptions configures a Prosody 0.12 server. The zero value is a
// standalone server for "a.localhost" on free ports, with 10 MiB stanza
// limits, no shaper and Prosody's untuned network defaults.
type ProsodyOptions struct {
	// Dir is the server's directory (config, certificates, data, logs), e.g.
	// from t.TempDir(); it is created if missing and left in place by Close.
	// If empty, the harness makes a temporary directory and Close removes it.
	Dir string
	// Domain is the VirtualHost; default "a.localhost".
	Domain string
	// C2SPort and S2SPort are ports on 127.0.0.1; zero picks a free port.
	C2SPort, S2SPort int
	// Limits chooses the client limits: Unlimited (default) or StockLimits,
	// the mod_limits rates of Debian's prosody.cfg.lua (see [StockLimits]).
	Limits Limits
	// StanzaSizeLimit is c2s_stanza_size_limit in bytes; default
	// DefaultStanzaSizeLimit, or with StockLimits Prosody's own default
	// (262144, which Debian's file keeps).
	StanzaSizeLimit int
	// S2SStanzaSizeLimit is s2s_stanza_size_limit in bytes; default
	// DefaultStanzaSizeLimit, or with StockLimits Prosody's own default
	// (524288).
	S2SStanzaSizeLimit int
	// Shaper, if not nil, loads mod_limits with this c2s rate (s2s stays
	// unlimited). The rate must be a multiple of 10 bytes/s. Burst is ignored
	// by Prosody's epoll backend, which pauses reading from a connection for
	// n/Rate seconds after each read of n bytes (at most ReadSize).
	// It cannot be combined with StockLimits.
	Shaper *Shaper
	// Proxy65 runs Prosody's SOCKS5 bytestream proxy: the component
	// "proxy.<Domain>" with module proxy65, listening on
	// 127.0.0.1:Proxy65Port and announcing that address in its streamhost.
	// Prosody lists a component under its parent host in the host's
	// disco#items by itself. [Server.Proxy65] reports it.
	Proxy65 bool
	// Proxy65Port is the proxy's port on 127.0.0.1; zero picks a free port.
	Proxy65Port int
	// DisableNagle sets network_settings = { nagle = false } (TCP_NODELAY on
	// every connection). Off by default: users' servers are untuned, and with
	// Nagle on a stanza larger than ~8 KiB costs ~40 ms (see anchors.md).
	DisableNagle bool
	// ReadSize sets network_default_read_size, the bytes Prosody reads per
	// socket read; zero keeps Prosody's default (4096).
	ReadSize int
	// LogLevel is the minimum level logged: "debug", "info" (default), "warn"
	// or "error".
	LogLevel string
	// Remotes lists the servers this one federates with. Prosody's resolver
	// option holds one SRV record, so at most one remote is supported, and
	// its domain must be under ".localhost" (see [Remote]).
	Remotes []Remote
	// CA issues the server's certificate; nil uses one CA per process.
	CA *CA
	// StartTimeout bounds each Start; default 10 s.
	StartTimeout time.Duration
}

// StartProsody writes a Prosody configuration in opts.Dir and starts the
// server (see [Server.Start]). The caller must call [Server.Close].
func StartProsody(ctx context.Context, opts ProsodyOptions) (*Server, error) {
	s, err := newProsody(opts)
	if err != nil {
		return nil, err
	}
	if err := s.Start(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// newProsody prepares a Prosody server without starting it.
func newProsody(opts ProsodyOptions) (*Server, error) {
	if opts.Domain == "" {
		opts.Domain = "a.localhost"
	}
	if err := opts.Limits.check(opts.Shaper); err != nil {
		return nil, err
	}
	if opts.Limits == Unlimited {
		// With StockLimits, zero leaves Prosody's own defaults, as
		// Debian's file does.
		if opts.StanzaSizeLimit == 0 {
			opts.StanzaSizeLimit = DefaultStanzaSizeLimit
		}
		if opts.S2SStanzaSizeLimit == 0 {
			opts.S2SStanzaSizeLimit = DefaultStanzaSizeLimit
		}
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 10 * time.Second
	}
	switch opts.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return nil, fmt.Errorf("harness: Prosody log level %q: want debug, info, warn or error", opts.LogLevel)
	}
	if len(opts.Remotes) > 1 {
		return nil, fmt.Errorf("harness: Prosody supports one remote domain, got %d", len(opts.Remotes))
	}
	for _, r := range opts.Remotes {
		if !strings.HasSuffix(r.Domain, ".localhost") || r.S2SPort == 0 {
			return nil, fmt.Errorf("harness: Prosody remote %+v: want a domain under .localhost and its s2s port", r)
		}
	}
	if opts.Shaper != nil && (opts.Shaper.Rate <= 0 || opts.Shaper.Rate%10 != 0) {
		return nil, fmt.Errorf("harness: Prosody shaper rate %d: must be a positive multiple of 10 bytes/s", opts.Shaper.Rate)
	}
	ca := opts.CA
	if ca == nil {
		var err error
		if ca, err = defaultCA(); err != nil {
			return nil, err
		}
	}
	ports := []*int{&opts.C2SPort, &opts.S2SPort}
	if opts.Proxy65 {
		ports = append(ports, &opts.Proxy65Port)
	}
	if err := fillPorts(ports...); err != nil {
		return nil, err
	}
	var proxy Proxy65
	if opts.Proxy65 {
		var err error
		if proxy, err = newProxy65(opts.Domain, opts.Proxy65Port); err != nil {
			return nil, err
		}
	}
	certPEM, keyPEM, err := ca.Issue(opts.Domain)
	if err != nil {
		return nil, err
	}
	dir, own, err := newDir(opts.Dir, "xtls-prosody-")
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "prosody.cfg.lua")
	if err := writeFiles(dir, []string{"data"}, map[string][]byte{
		"prosody.cfg.lua":               []byte(prosodyConfig(dir, opts)),
		"certs/" + opts.Domain + ".crt": certPEM,
		"certs/" + opts.Domain + ".key": keyPEM,
	}); err != nil {
		if own {
			os.RemoveAll(dir)
		}
		return nil, err
	}
	s := &Server{
		kind:         "prosody",
		domain:       opts.Domain,
		dir:          dir,
		ownDir:       own,
		c2sPort:      opts.C2SPort,
		s2sPort:      opts.S2SPort,
		ports:        []int{opts.C2SPort, opts.S2SPort},
		ca:           ca,
		startTimeout: opts.StartTimeout,
		stdoutPath:   filepath.Join(dir, "stdout.log"),
		logPaths:     []string{filepath.Join(dir, "stdout.log"), filepath.Join(dir, "prosody.log")},
		startFailure: prosodyStartFailure,
		limits:       opts.Limits,
		proxy65:      proxy,
	}
	switch {
	case opts.Limits == StockLimits:
		s.c2sRate = ProsodyStockC2SRate
	case opts.Shaper != nil:
		s.c2sRate = opts.Shaper.Rate
	}
	if opts.Proxy65 {
		s.ports = append(s.ports, opts.Proxy65Port)
	}
	s.command = func() *exec.Cmd {
		// -F: foreground, so the PID is the server itself.
		cmd := exec.Command("prosody", "--config", cfgPath, "-F")
		cmd.Dir = dir
		return cmd
	}
	s.addUser = func(ctx context.Context, local, password string) error {
		cmd := exec.CommandContext(ctx, "prosodyctl", "--config", cfgPath, "register", local, opts.Domain, password)
		cmd.Dir = dir
		return runTool(ctx, cmd, password)
	}
	return s, nil
}

// prosodyStartFailure returns the first log line that shows Prosody cannot
// serve even though its process keeps running: a port it failed to open
// (it logs the error and carries on without the port), or a pidfile held by
// another instance.
func prosodyStartFailure(log string) string {
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, "Failed to open server port") ||
			strings.Contains(line, "Another Prosody instance seems to be running") {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// prosodyConfig returns the prosody.cfg.lua for a server in dir.
func prosodyConfig(dir string, o ProsodyOptions) string {
	q := strconv.Quote // Go's quoting is valid Lua for the strings we write
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("-- Written by the xtls integration harness.")
	w("run_as_root = true -- needed when started as root; harmless otherwise")
	w("pidfile = %s", q(filepath.Join(dir, "prosody.pid")))
	w("data_path = %s", q(filepath.Join(dir, "data")))
	w("certificates = %s", q(filepath.Join(dir, "certs")))
	w("log = { { levels = { min = %s }, to = \"file\", filename = %s } }", q(o.LogLevel), q(filepath.Join(dir, "prosody.log")))
	w("interfaces = { \"127.0.0.1\" }")
	w("c2s_ports = { %d }", o.C2SPort)
	w("s2s_ports = { %d }", o.S2SPort)
	w("c2s_direct_tls_ports = { }")
	w("s2s_direct_tls_ports = { }")
	w("use_ipv6 = false")
	w("c2s_require_encryption = true")
	w("s2s_require_encryption = true")
	w("s2s_secure_auth = false -- peers' certificates are not trusted: dialback")
	w("authentication = \"internal_hashed\"")
	w("storage = \"internal\"")
	modules := []string{"tls", "saslauth", "disco", "roster", "ping", "dialback"}
	if o.Shaper != nil || o.Limits == StockLimits {
		modules = append(modules, "limits")
	}
	for i, m := range modules {
		modules[i] = q(m)
	}
	w("modules_enabled = { %s }", strings.Join(modules, ", "))
	if o.StanzaSizeLimit != 0 {
		w("c2s_stanza_size_limit = %d", o.StanzaSizeLimit)
	}
	if o.S2SStanzaSizeLimit != 0 {
		w("s2s_stanza_size_limit = %d", o.S2SStanzaSizeLimit)
	}
	if o.Limits == StockLimits {
		// Debian's prosody.cfg.lua, verbatim.
		w("limits = {")
		w("\tc2s = {")
		w("\t\trate = \"10kb/s\";")
		w("\t};")
		w("\ts2sin = {")
		w("\t\trate = \"30kb/s\";")
		w("\t};")
		w("}")
	}
	if o.Shaper != nil {
		burst := ""
		if o.Shaper.Burst > 0 {
			burst = fmt.Sprintf(" burst = %g;", float64(o.Shaper.Burst)/float64(o.Shaper.Rate))
		}
		w("limits = { c2s = { rate = %s;%s }; s2sin = { rate = \"1000mb/s\" }; s2sout = { rate = \"1000mb/s\" } }", q(prosodyRate(o.Shaper.Rate)), burst)
	}
	if o.DisableNagle {
		w("network_settings = { nagle = false }")
	}
	if o.ReadSize > 0 {
		w("network_default_read_size = %d", o.ReadSize)
	}
	for _, r := range o.Remotes {
		// The remote's SRV record, answered by libunbound itself; "static"
		// answers NXDOMAIN for anything else in the zone (e.g. XEP-0368's
		// _xmpps-server) instead of asking the root servers.
		w("unbound = {")
		w("  resolvconf = false; hoststxt = false;")
		w("  options = {")
		w("    [\"local-zone\"] = %s;", q("_tcp."+r.Domain+". static"))
		w("    [\"local-data\"] = %s;", q(fmt.Sprintf("_xmpp-server._tcp.%s. 60 IN SRV 0 0 %d %s.", r.Domain, r.S2SPort, r.Domain)))
		w("  };")
		w("}")
	}
	if o.Proxy65 {
		// The proxy's listener is global: under the Component these two
		// are ignored (with a warning) and it listens on port 5000.
		w("proxy65_ports = { %d }", o.Proxy65Port)
		w("proxy65_interfaces = { \"127.0.0.1\" }")
	}
	w("ssl = { certificate = %s; key = %s; }",
		q(filepath.Join(dir, "certs", o.Domain+".crt")), q(filepath.Join(dir, "certs", o.Domain+".key")))
	w("-- Everything above is global; below is per host.")
	w("VirtualHost %s", q(o.Domain))
	if o.Proxy65 {
		// A component under the VirtualHost's domain is in the host's
		// disco#items without a disco_items entry (which would list it
		// twice).
		w("Component %s \"proxy65\"", q(proxyHost(o.Domain)))
		w("\tproxy65_address = \"127.0.0.1\"")
	}
	return b.String()
}

// prosodyRate writes bytesPerSecond in mod_limits' syntax. Prosody 0.12
// reads the unit's first letter as a power of ten with b = 1, k = 3, m = 6,
// so "3000b/s" means 30000 bytes/s. Whole kilobytes are written with "k";
// anything else (a multiple of 10) is written in "b" as tens of bytes.
func prosodyRate(bytesPerSecond int) string {
	if bytesPerSecond%1000 == 0 {
		return fmt.Sprintf("%dkb/s", bytesPerSecond/1000)
	}
	return fmt.Sprintf("%db/s", bytesPerSecond/10)
}
