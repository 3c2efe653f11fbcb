package harness

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The shipped configuration files the StockLimits preset mirrors. The
// Debian packages install them (scripts/install-deps.sh); a missing file
// fails the test, as a missing server does.
const (
	debianProsodyConfig  = "/etc/prosody/prosody.cfg.lua"
	debianEjabberdConfig = "/etc/ejabberd/ejabberd.yml"
)

// prepareProsody writes a Prosody configuration without starting the server
// and returns the Server and its configuration text.
func prepareProsody(t *testing.T, o ProsodyOptions) (*Server, string) {
	t.Helper()
	o.Dir = t.TempDir()
	s, err := newProsody(o)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(s.Dir(), "prosody.cfg.lua"))
	if err != nil {
		t.Fatal(err)
	}
	return s, string(cfg)
}

// prepareEjabberd is prepareProsody for ejabberd.
func prepareEjabberd(t *testing.T, o EjabberdOptions) (*Server, string) {
	t.Helper()
	o.Dir = t.TempDir()
	s, err := newEjabberd(o)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(s.Dir(), "ejabberd.yml"))
	if err != nil {
		t.Fatal(err)
	}
	return s, string(cfg)
}

// luaBlock returns the text of the table assigned to name at the start of a
// line ("limits = { ... }"), up to its matching brace, with comments and
// blank space removed, or "" if there is none.
func luaBlock(cfg, name string) string {
	loc := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\s*=\s*\{`).FindStringIndex(cfg)
	if loc == nil {
		return ""
	}
	depth := 0
	for i := loc[1] - 1; i < len(cfg); i++ {
		switch cfg[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				block := regexp.MustCompile(`--[^\n]*`).ReplaceAllString(cfg[loc[0]:i+1], "")
				return strings.Join(strings.Fields(block), "")
			}
		}
	}
	return ""
}

// TestProsodyStockLimitsConfig checks that StockLimits writes the limits of
// Debian's prosody.cfg.lua as that file has them, loads mod_limits, and
// leaves the stanza size limits to Prosody's defaults, as the file does.
func TestProsodyStockLimitsConfig(t *testing.T) {
	debian, err := os.ReadFile(debianProsodyConfig)
	if err != nil {
		t.Fatalf("Debian's shipped Prosody configuration: %v (install prosody: scripts/install-deps.sh)", err)
	}
	want := luaBlock(string(debian), "limits")
	if want == "" {
		t.Fatalf("%s has no limits table", debianProsodyConfig)
	}
	if !regexp.MustCompile(`(?m)^\s*"limits";`).Match(debian) {
		t.Fatalf("%s does not enable mod_limits: the preset no longer mirrors it", debianProsodyConfig)
	}

	s, cfg := prepareProsody(t, ProsodyOptions{Limits: StockLimits})
	if got := luaBlock(cfg, "limits"); got != want {
		t.Errorf("limits table:\n got %s\nwant %s (%s)", got, want, debianProsodyConfig)
	}
	if !strings.Contains(cfg, `"limits" }`) {
		t.Errorf("mod_limits is not in modules_enabled:\n%s", cfg)
	}
	for _, absent := range []string{"c2s_stanza_size_limit", "s2s_stanza_size_limit", "s2sout"} {
		if strings.Contains(cfg, absent) {
			t.Errorf("%s is set; Debian's file leaves it to Prosody:\n%s", absent, cfg)
		}
	}
	if s.C2SRate() != ProsodyStockC2SRate || s.Limits() != StockLimits {
		t.Errorf("C2SRate %d, Limits %v; want %d, %v", s.C2SRate(), s.Limits(), ProsodyStockC2SRate, StockLimits)
	}
	// "10kb/s" as mod_limits parses it: 10 * 10^3.
	if luaBlock(cfg, "limits") != `limits={c2s={rate="10kb/s";};s2sin={rate="30kb/s";};}` {
		t.Errorf("the rates are not 10kb/s and 30kb/s:\n%s", cfg)
	}

	_, plain := prepareProsody(t, ProsodyOptions{})
	if strings.Contains(plain, `"limits"`) || luaBlock(plain, "limits") != "" {
		t.Errorf("Unlimited loads mod_limits:\n%s", plain)
	}
	if !strings.Contains(plain, "c2s_stanza_size_limit = 10485760") {
		t.Errorf("Unlimited lost its 10 MiB stanza limit:\n%s", plain)
	}
}

// ejabberdLimits is the part of an ejabberd.yml that StockLimits mirrors.
type ejabberdLimits struct {
	Shaper      map[string]any
	ShaperRules map[string]any `yaml:"shaper_rules"`
	AdminACL    any
	C2S, S2S    map[string]any // the listeners' max_stanza_size and shaper
}

// parseEjabberdLimits reads the limits out of an ejabberd.yml.
func parseEjabberdLimits(t *testing.T, text string) ejabberdLimits {
	t.Helper()
	var doc struct {
		Shaper      map[string]any            `yaml:"shaper"`
		ShaperRules map[string]any            `yaml:"shaper_rules"`
		ACL         map[string]any            `yaml:"acl"`
		Listen      []map[string]any          `yaml:"listen"`
		Modules     map[string]map[string]any `yaml:"modules"`
	}
	// Debian's file holds placeholders such as 'TLS_OPTIONS', which are
	// plain strings to YAML.
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatal(err)
	}
	l := ejabberdLimits{Shaper: doc.Shaper, ShaperRules: doc.ShaperRules, AdminACL: doc.ACL["admin"]}
	for _, ln := range doc.Listen {
		keep := map[string]any{"max_stanza_size": ln["max_stanza_size"], "shaper": ln["shaper"]}
		switch {
		case ln["module"] == "ejabberd_c2s" && l.C2S == nil:
			l.C2S = keep
		case ln["module"] == "ejabberd_s2s_in":
			l.S2S = keep
		}
	}
	// Debian's shaper_rules also limit offline messages, which are no
	// client limit; compare the rules the preset claims.
	for k := range l.ShaperRules {
		if k != "c2s_shaper" && k != "s2s_shaper" && k != "max_user_sessions" {
			delete(l.ShaperRules, k)
		}
	}
	return l
}

// TestEjabberdStockLimitsConfig checks that StockLimits writes the shapers,
// shaper rules, admin ACL and listener limits of Debian's ejabberd.yml as
// that file has them.
func TestEjabberdStockLimitsConfig(t *testing.T) {
	debian, err := os.ReadFile(debianEjabberdConfig)
	if err != nil {
		t.Fatalf("Debian's shipped ejabberd configuration: %v (install ejabberd: scripts/install-deps.sh)", err)
	}
	want := parseEjabberdLimits(t, string(debian))
	s, cfg := prepareEjabberd(t, EjabberdOptions{Limits: StockLimits})
	got := parseEjabberdLimits(t, cfg)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("limits:\n got %+v\nwant %+v (%s)\n%s", got, want, debianEjabberdConfig, cfg)
	}
	// What the preset's documentation promises, whatever the file says.
	wantNormal := map[string]any{"rate": DebianC2SShaper.Rate, "burst_size": DebianC2SShaper.Burst}
	if !reflect.DeepEqual(got.Shaper["normal"], wantNormal) || got.C2S["shaper"] != "c2s_shaper" {
		t.Errorf("the c2s shaper is not normal = %v: %+v", wantNormal, got)
	}
	if s.C2SRate() != DebianC2SShaper.Rate || s.Limits() != StockLimits {
		t.Errorf("C2SRate %d, Limits %v; want %d, %v", s.C2SRate(), s.Limits(), DebianC2SShaper.Rate, StockLimits)
	}

	_, plain := prepareEjabberd(t, EjabberdOptions{})
	p := parseEjabberdLimits(t, plain)
	if p.Shaper != nil || p.ShaperRules != nil || p.C2S["shaper"] != "none" || p.C2S["max_stanza_size"] != DefaultStanzaSizeLimit {
		t.Errorf("Unlimited: %+v\n%s", p, plain)
	}
}

func TestLimitsOptionErrors(t *testing.T) {
	shaper := &Shaper{Rate: 1000}
	if _, err := newProsody(ProsodyOptions{Dir: t.TempDir(), Limits: StockLimits, Shaper: shaper}); err == nil {
		t.Error("Prosody: StockLimits with a Shaper was accepted")
	}
	if _, err := newEjabberd(EjabberdOptions{Dir: t.TempDir(), Limits: StockLimits, Shaper: shaper}); err == nil {
		t.Error("ejabberd: StockLimits with a Shaper was accepted")
	}
	if _, err := newProsody(ProsodyOptions{Dir: t.TempDir(), Limits: Limits(7)}); err == nil {
		t.Error("Prosody: an unknown Limits was accepted")
	}
	s, _ := prepareProsody(t, ProsodyOptions{Shaper: shaper})
	if s.C2SRate() != 1000 || s.Limits() != Unlimited {
		t.Errorf("with a Shaper: C2SRate %d, Limits %v", s.C2SRate(), s.Limits())
	}
	s, _ = prepareProsody(t, ProsodyOptions{})
	if s.C2SRate() != 0 {
		t.Errorf("unlimited: C2SRate %d", s.C2SRate())
	}
}

// TestProxy65Config checks where the proxy's options go: Prosody's listener
// options in the global section and proxy65_address under the component;
// ejabberd's mod_proxy65 on 127.0.0.1. Both servers wait for the proxy's
// port before they count as started.
func TestProxy65Config(t *testing.T) {
	s, cfg := prepareProsody(t, ProsodyOptions{Proxy65: true, Proxy65Port: 41234})
	global, hosts, ok := strings.Cut(cfg, "\nVirtualHost ")
	if !ok {
		t.Fatalf("no VirtualHost:\n%s", cfg)
	}
	for _, line := range []string{`proxy65_ports = { 41234 }`, `proxy65_interfaces = { "127.0.0.1" }`} {
		if !strings.Contains(global, line+"\n") {
			t.Errorf("%q is not in the global section:\n%s", line, cfg)
		}
	}
	_, component, ok := strings.Cut(hosts, "\nComponent \"proxy.a.localhost\" \"proxy65\"\n")
	if !ok || !strings.Contains(component, `proxy65_address = "127.0.0.1"`) {
		t.Errorf("no proxy65 component with proxy65_address 127.0.0.1:\n%s", cfg)
	}
	checkProxy := func(s *Server, wantJID string) {
		t.Helper()
		p, ok := s.Proxy65()
		if !ok || p.JID.String() != wantJID || p.Addr() != "127.0.0.1:41234" {
			t.Errorf("%s: Proxy65() = %+v, %v", s.Kind(), p, ok)
		}
		if s.ports[len(s.ports)-1] != 41234 {
			t.Errorf("%s: Start does not wait for the proxy's port: %v", s.Kind(), s.ports)
		}
	}
	checkProxy(s, "proxy.a.localhost")

	e, ecfg := prepareEjabberd(t, EjabberdOptions{Proxy65: true, Proxy65Port: 41234})
	var doc struct {
		Modules map[string]map[string]any `yaml:"modules"`
	}
	if err := yaml.Unmarshal([]byte(ecfg), &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"host": "proxy.b.localhost", "ip": "127.0.0.1", "port": 41234, "hostname": "127.0.0.1"}
	if got := doc.Modules["mod_proxy65"]; !reflect.DeepEqual(got, want) {
		t.Errorf("mod_proxy65: %v, want %v", got, want)
	}
	checkProxy(e, "proxy.b.localhost")

	s, cfg = prepareProsody(t, ProsodyOptions{})
	if _, ok := s.Proxy65(); ok || strings.Contains(cfg, "proxy65") {
		t.Errorf("a proxy without Proxy65:\n%s", cfg)
	}
}
