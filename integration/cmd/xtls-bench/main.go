// Command xtls-bench measures xtls through real Prosody and ejabberd servers
// side by side with what a user could otherwise use, and prints one table.
//
//	make bench                       # or: go run ./integration/cmd/xtls-bench
//	go run ./integration/cmd/xtls-bench -runs 5 -size 32 -servers prosody
//	go run ./integration/cmd/xtls-bench -cpuprofile cpu.out -memprofile mem.out
//
// It starts private servers with the integration harness (127.0.0.1 only,
// temporary directories, Prosody and ejabberd untuned as Debian ships them
// apart from mod_limits), logs in two clients on each and measures, each
// row the median of -runs runs:
//
//   - xtls: payload MB/s through one tunnel (TLS 1.3 inside), one way and
//     both ways at once;
//   - mellium's ibb (XEP-0047), the library a user would otherwise reach for;
//   - the raw ceiling of this stack: pipelined IQ-sets carrying Base64
//     chunks of the tunnel's chunk size (the Handler's choice for the
//     server unless -chunk sets it), -inflight outstanding, answered at
//     once, no TLS, no reassembly;
//   - crypto/tls over TCP loopback, the physical reference;
//   - time from Dial to the first application byte, in ms and in IQ round
//     trips (the median of 200 small IQ round trips measured in the same
//     run);
//   - memory: heap per idle tunnel and per tunnel moving data at -tunnels
//     tunnels over one session, and allocations per MiB of payload;
//   - xtls against ibb with the two clients -rtt apart: two more clients
//     log in through toxiproxy (in-process, 127.0.0.1), each link delayed
//     by a quarter of the round trip each way.
//
// xtls one way and the ceiling run in alternation, and their ratio is the
// median of the ratios of neighbouring runs. On Linux the same runs report
// how busy the server's CPU was and the CPU time per MB of the server and
// of the clients: a server that is not busy waits for something, which is
// where a tunnel loses against the ceiling. -quick measures only those
// rows; -prosody-readsize and -prosody-nodelay start a tuned Prosody to
// compare with:
//
//	go run ./integration/cmd/xtls-bench -quick -servers prosody -runs 5 -size 32
//	go run ./integration/cmd/xtls-bench -quick -servers prosody -prosody-readsize 65536
//
// MB is 10^6 bytes of payload, not of Base64. Both clients and the server
// share the machine, so absolute figures drift: read the ratios.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/ibb"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"

	"github.com/xmppxtls/xtls/integration/harness"
	"github.com/xmppxtls/xtls/transport"
	"github.com/xmppxtls/xtls/xtls"
)

const benchNS = "urn:xmppxtls:bench"

type options struct {
	runs     int
	size     int64 // bytes per xtls, ceiling and TLS run
	ibbSize  int64
	inflight int
	chunk    int
	tunnels  int
	dials    int
	servers  []string
	rtts     []time.Duration
	rttSize  int64
	cpuProf  string
	memProf  string
	// quick measures only the paired xtls and ceiling rows.
	quick bool
	// prosodyNoNagle and prosodyReadSize tune the Prosody under test.
	prosodyNoNagle  bool
	prosodyReadSize int
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("xtls-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var sizeMiB, ibbMiB int
	var servers string
	fs.IntVar(&o.runs, "runs", 3, "runs per row (the median is shown)")
	fs.IntVar(&sizeMiB, "size", 64, "MiB per xtls, ceiling and TLS run")
	fs.IntVar(&ibbMiB, "ibb-size", 8, "MiB per ibb run (ibb is slow; MB/s does not depend on it)")
	fs.IntVar(&o.inflight, "inflight", 32, "IQs outstanding in the raw ceiling")
	fs.IntVar(&o.chunk, "chunk", 0, "payload bytes per data IQ: the tunnels' transport.Config.ChunkSize and the ceiling's chunk; 0 leaves the choice to the Handler (2880 on Prosody, 5120 otherwise) and gives the ceiling the same")
	fs.IntVar(&o.tunnels, "tunnels", 1000, "tunnels over one session for the memory rows")
	fs.IntVar(&o.dials, "dials", 20, "dials for the first-byte row")
	fs.StringVar(&servers, "servers", "prosody,ejabberd", "servers to measure")
	var rtts string
	var rttMiB int
	fs.StringVar(&rtts, "rtt", "10ms,50ms", "round trips between the two clients (through toxiproxy on each client's link) for the xtls-vs-ibb rows; empty for none")
	fs.IntVar(&rttMiB, "rtt-size", 4, "MiB per xtls run at a round trip (ibb moves a tenth)")
	fs.StringVar(&o.cpuProf, "cpuprofile", "", "write a CPU profile of the xtls runs to this file")
	fs.StringVar(&o.memProf, "memprofile", "", "write an allocation profile to this file at the end")
	fs.BoolVar(&o.quick, "quick", false, "measure only xtls one way and the raw ceiling (for tuning experiments)")
	fs.BoolVar(&o.prosodyNoNagle, "prosody-nodelay", false, "start Prosody with network_settings = { nagle = false }")
	fs.IntVar(&o.prosodyReadSize, "prosody-readsize", 0, "start Prosody with this network_default_read_size (0: its default, 4096)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o.size, o.ibbSize = int64(sizeMiB)<<20, int64(ibbMiB)<<20
	o.rttSize = int64(rttMiB) << 20
	for _, r := range strings.Split(rtts, ",") {
		if r == "" {
			continue
		}
		d, err := time.ParseDuration(r)
		if err != nil || d <= 0 {
			fmt.Fprintf(stderr, "xtls-bench: bad -rtt %q\n", r)
			return 2
		}
		o.rtts = append(o.rtts, d)
		rows = append(rows,
			row{fmt.Sprintf("x@%v", d), fmt.Sprintf("xtls one way, clients %v apart (toxiproxy)", d), "MB/s"},
			row{fmt.Sprintf("i@%v", d), fmt.Sprintf("ibb one way, clients %v apart (toxiproxy)", d), "MB/s"},
			row{fmt.Sprintf("r@%v", d), fmt.Sprintf("xtls / ibb, clients %v apart", d), "×"},
			row{fmt.Sprintf("f@%v", d), fmt.Sprintf("Dial → peer reads our first byte, clients %v apart", d), "IQ RTTs"},
		)
	}
	o.servers = strings.Split(servers, ",")

	var cols []column
	for _, name := range o.servers {
		fmt.Fprintf(stderr, "== %s\n", name)
		col, err := benchServer(name, o, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "xtls-bench: %s: %v\n", name, err)
			return 1
		}
		cols = append(cols, col)
	}
	if o.memProf != "" {
		f, err := os.Create(o.memProf)
		if err == nil {
			pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	printTable(stdout, o, cols)
	return 0
}

// column is one server's results, row name → value.
type column struct {
	name string
	vals map[string]float64
}

// row is one line of the table.
type row struct{ key, label, unit string }

var rows = []row{
	{"xtls1", "xtls, one tunnel, one way", "MB/s"},
	{"xtls2", "xtls, one tunnel, both ways at once (sum)", "MB/s"},
	{"ibb", "mellium ibb (XEP-0047), one way", "MB/s"},
	{"ceil", "raw ceiling: pipelined IQ-sets, no TLS", "MB/s"},
	{"chunk", "payload per data IQ (the Handler's choice), both", "bytes"},
	{"tcp", "crypto/tls 1.3 over TCP loopback", "MB/s"},
	{"r_ceil", "xtls / raw ceiling", "×"},
	{"r_ibb", "xtls / ibb", "×"},
	{"r_cibb", "raw ceiling / ibb: the most any tunnel here gains on ibb", "×"},
	{"busy_x", "server CPU during xtls one way (100 = one core)", "%"},
	{"busy_c", "server CPU during the raw ceiling (100 = one core)", "%"},
	{"scpu_x", "server CPU per MB, xtls one way", "ms"},
	{"scpu_c", "server CPU per MB, raw ceiling", "ms"},
	{"cpu_x", "client CPU per MB (both ends), xtls one way", "ms"},
	{"cpu_c", "client CPU per MB (both ends), raw ceiling", "ms"},
	{"rtt", "small IQ round trip (median of 200)", "ms"},
	{"fb_ms", "Dial → peer reads our first byte", "ms"},
	{"fb_rtt", "Dial → peer reads our first byte", "IQ RTTs"},
	{"fb2_ms", "Dial → we read the peer's first byte", "ms"},
	{"fb2_rtt", "Dial → we read the peer's first byte", "IQ RTTs"},
	{"fbq_ms", "Dial → peer reads our first byte, Config.NoQuickAck", "ms"},
	{"fbq_rtt", "Dial → peer reads our first byte, Config.NoQuickAck", "IQ RTTs"},
	{"tcp_fb", "same over TCP loopback: TLS 1.3, mutual certificates", "ms"},
	{"fb_net", "(xtls − TCP) / IQ RTT: round trips the XMPP path adds", "IQ RTTs"},
	{"idle", "heap per idle tunnel (both ends)", "KiB"},
	{"active", "heap per tunnel moving data (both ends)", "KiB"},
	{"spread", "slowest / median tunnel, all moving at once", "×"},
	{"allocs", "allocations per MiB (both ends, mellium included)", "allocs"},
	{"bytes", "bytes allocated per MiB (both ends, mellium included)", "KiB"},
}

func printTable(w io.Writer, o options, cols []column) {
	fmt.Fprintf(w, "xtls-bench %s  %s/%s  %d CPUs  %s  median of %d runs, %d MiB (ibb %d MiB), ceiling %d IQs in flight, %d tunnels\n\n",
		time.Now().Format("2006-01-02"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(),
		o.runs, o.size>>20, o.ibbSize>>20, o.inflight, o.tunnels)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "what\tunit\t")
	for _, c := range cols {
		fmt.Fprintf(tw, "%s\t", c.name)
	}
	fmt.Fprintln(tw)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t", r.label, r.unit)
		for _, c := range cols {
			v, ok := c.vals[r.key]
			switch {
			case !ok:
				fmt.Fprint(tw, "–\t")
			case v >= 100:
				fmt.Fprintf(tw, "%.0f\t", v)
			default:
				fmt.Fprintf(tw, "%.2f\t", v)
			}
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

func benchServer(name string, o options, log io.Writer) (column, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var srv *harness.Server
	var err error
	switch name {
	case "prosody":
		srv, err = harness.StartProsody(ctx, harness.ProsodyOptions{DisableNagle: o.prosodyNoNagle, ReadSize: o.prosodyReadSize})
	case "ejabberd":
		srv, err = harness.StartEjabberd(ctx, harness.EjabberdOptions{})
	default:
		return column{}, fmt.Errorf("unknown server %q (prosody or ejabberd)", name)
	}
	if err != nil {
		return column{}, err
	}
	defer srv.Close()
	for _, u := range []string{"alice", "bob"} {
		if err := srv.AddUser(ctx, u, u+"-secret"); err != nil {
			return column{}, err
		}
	}
	col := column{name: name, vals: map[string]float64{}}
	a, err := login(ctx, srv, "alice", tuning{chunk: o.chunk})
	if err != nil {
		return col, err
	}
	defer a.close()
	b, err := login(ctx, srv, "bob", tuning{chunk: o.chunk})
	if err != nil {
		return col, err
	}
	defer b.close()

	measure := func(key string, f func() (float64, error)) error {
		var vs []float64
		for i := 0; i < o.runs; i++ {
			v, err := f()
			if err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			vs = append(vs, v)
		}
		col.vals[key] = median(vs)
		fmt.Fprintf(log, "  %-8s %v → %.2f\n", key, round(vs), col.vals[key])
		return nil
	}
	if o.cpuProf != "" && name == o.servers[0] {
		f, err := os.Create(o.cpuProf)
		if err != nil {
			return col, err
		}
		pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	// xtls and the ceiling alternate run by run and their ratio is the
	// median of neighbours' ratios: the machine drifts between runs more
	// than within one pair.
	var xs, cs, rs []float64
	var xcpu, ccpu cpuUse
	for range o.runs {
		u := startCPU(srv.PID())
		x, err := xtlsRate(a, b, o.size, false)
		if err != nil {
			return col, fmt.Errorf("xtls1: %w", err)
		}
		xcpu.add(u.stop())
		u = startCPU(srv.PID())
		// The tunnel's Dial settled the chunk size for this server.
		c, err := ceiling(a, b, o.size, a.h.ChunkSize(), o.inflight)
		if err != nil {
			return col, fmt.Errorf("ceil: %w", err)
		}
		ccpu.add(u.stop())
		xs, cs, rs = append(xs, x), append(cs, c), append(rs, x/c)
	}
	col.vals["xtls1"], col.vals["ceil"], col.vals["r_ceil"] = median(xs), median(cs), median(rs)
	col.vals["chunk"] = float64(a.h.ChunkSize())
	if b.h.ChunkSize() != a.h.ChunkSize() {
		return col, fmt.Errorf("chunk sizes differ: alice %d, bob %d", a.h.ChunkSize(), b.h.ChunkSize())
	}
	fmt.Fprintf(log, "  xtls1    %v\n  ceil     %v\n  r_ceil   %v → %.2f\n", round(xs), round(cs), round(rs), col.vals["r_ceil"])
	mb := float64(o.runs) * float64(o.size) / 1e6
	fmt.Fprintf(log, "  CPU ms per MB (clients / server / wall): xtls %s, ceiling %s\n", xcpu.per(mb), ccpu.per(mb))
	if xcpu.server > 0 && ccpu.server > 0 {
		col.vals["busy_x"], col.vals["busy_c"] = 100*xcpu.server.Seconds()/xcpu.wall.Seconds(), 100*ccpu.server.Seconds()/ccpu.wall.Seconds()
		col.vals["scpu_x"], col.vals["scpu_c"] = ms(xcpu.server)/mb, ms(ccpu.server)/mb
	}
	if xcpu.self > 0 && ccpu.self > 0 {
		col.vals["cpu_x"], col.vals["cpu_c"] = ms(xcpu.self)/mb, ms(ccpu.self)/mb
	}
	if o.quick {
		return col, nil
	}
	steps := []struct {
		key string
		f   func() (float64, error)
	}{
		{"xtls2", func() (float64, error) { return xtlsRate(a, b, o.size, true) }},
		{"ibb", func() (float64, error) { return ibbRate(a, b, o.ibbSize) }},
		{"tcp", func() (float64, error) { return tlsTCPRate(o.size) }},
	}
	for _, s := range steps {
		if err := measure(s.key, s.f); err != nil {
			return col, err
		}
	}
	col.vals["r_ibb"] = col.vals["xtls1"] / col.vals["ibb"]
	col.vals["r_cibb"] = col.vals["ceil"] / col.vals["ibb"]

	rtt, err := iqRTT(a, b, 200)
	if err != nil {
		return col, err
	}
	col.vals["rtt"] = ms(rtt)
	peer, own, err := firstByte(a, b, o.dials)
	if err != nil {
		return col, err
	}
	col.vals["fb_ms"], col.vals["fb_rtt"] = ms(peer), float64(peer)/float64(rtt)
	col.vals["fb2_ms"], col.vals["fb2_rtt"] = ms(own), float64(own)/float64(rtt)
	if err := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		aq, err := login(ctx, srv, "alice", tuning{chunk: o.chunk, noQuickAck: true})
		if err != nil {
			return err
		}
		defer aq.close()
		bq, err := login(ctx, srv, "bob", tuning{chunk: o.chunk, noQuickAck: true})
		if err != nil {
			return err
		}
		defer bq.close()
		peer, _, err := firstByte(aq, bq, o.dials)
		col.vals["fbq_ms"], col.vals["fbq_rtt"] = ms(peer), float64(peer)/float64(rtt)
		return err
	}(); err != nil {
		return col, err
	}
	floor, err := tlsTCPFirstByte(o.dials)
	if err != nil {
		return col, err
	}
	col.vals["tcp_fb"] = ms(floor)
	col.vals["fb_net"] = float64(peer-floor) / float64(rtt)
	fmt.Fprintf(log, "  rtt %.2f ms, first byte %.2f / %.2f ms, over TCP %.2f ms\n", ms(rtt), ms(peer), ms(own), ms(floor))

	for _, d := range o.rtts {
		if err := atRTT(srv, d, o, col.vals, log); err != nil {
			return col, fmt.Errorf("at %v: %w", d, err)
		}
	}
	if err := allocsPerMiB(a, b, o.size, col.vals); err != nil {
		return col, err
	}
	if err := memory(a, b, o.tunnels, col.vals, log); err != nil {
		return col, err
	}
	return col, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	return s[len(s)/2]
}

func round(vs []float64) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = fmt.Sprintf("%.2f", v)
	}
	return out
}

// party is a logged-in client serving xtls, ibb and the bench's raw IQs.
type party struct {
	s    *xmpp.Session
	h    *xtls.Handler
	ibb  *ibb.Handler
	addr jid.JID
	done chan error
	// acc receives the tunnels peers open (one Accept loop per party).
	acc chan net.Conn
}

// tuning is what a party's Handler is given beyond the defaults.
type tuning struct {
	chunk      int  // transport.Config.ChunkSize
	noQuickAck bool // xtls.Config.NoQuickAck
}

func login(ctx context.Context, srv *harness.Server, user string, t tuning) (*party, error) {
	return loginWith(ctx, srv, user, t, func(ctx context.Context) (*xmpp.Session, error) {
		return srv.Connect(ctx, user, user+"-secret")
	})
}

// loginWith makes a party of the session connect returns.
func loginWith(ctx context.Context, srv *harness.Server, user string, t tuning, connect func(context.Context) (*xmpp.Session, error)) (*party, error) {
	s, err := connect(ctx)
	if err != nil {
		return nil, err
	}
	cert, err := xtls.GenerateCertificate(s.LocalAddr())
	if err != nil {
		return nil, err
	}
	p := &party{s: s, addr: s.LocalAddr(), ibb: &ibb.Handler{}, done: make(chan error, 1), acc: make(chan net.Conn, 4096)}
	p.h = xtls.NewHandler(s, &xtls.Config{Certificate: cert, Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true, NoQuickAck: t.noQuickAck, Transport: &transport.Config{ChunkSize: t.chunk}})
	answer := mux.IQHandlerFunc(func(iq stanza.IQ, t xmlstream.TokenReadEncoder, _ *xml.StartElement) error {
		_, err := xmlstream.Copy(t, iq.Result(nil))
		return err
	})
	m := mux.New(stanza.NSClient,
		disco.Handle(), p.h.Handle(), ibb.Handle(p.ibb),
		mux.IQ(stanza.SetIQ, xml.Name{Space: benchNS, Local: "data"}, answer),
		mux.IQ(stanza.GetIQ, xml.Name{Space: benchNS, Local: "ping"}, answer),
	)
	go func() {
		err := s.Serve(m)
		p.h.SessionEnded(err)
		p.done <- err
	}()
	ln := p.h.Listen()
	go func() {
		defer close(p.acc)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.acc <- c
		}
	}()
	return p, nil
}

func (p *party) close() {
	p.h.Close()
	p.s.Close()
	p.s.Conn().Close()
	<-p.done
}

// pipe dials a tunnel from a to b.
func pipe(a, b *party) (c1, c2 net.Conn, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c1, err = a.h.Dial(ctx, b.addr)
	if err != nil {
		return nil, nil, err
	}
	c2, ok := <-b.acc
	if !ok {
		c1.Close()
		return nil, nil, errors.New("accept failed")
	}
	return c1, c2, nil
}

// transfer copies n bytes from w to r (and, if both, from r to w at the
// same time) and returns payload MB/s.
func transfer(c1, c2 net.Conn, n int64, both bool) (float64, error) {
	src := make([]byte, 64<<10)
	rand.Read(src)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	oneWay := func(from, to net.Conn) {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for sent := int64(0); sent < n; sent += int64(len(src)) {
				if _, err := from.Write(src[:min(int64(len(src)), n-sent)]); err != nil {
					errs <- err
					return
				}
			}
			if cw, ok := from.(interface{ CloseWrite() error }); ok {
				errs <- cw.CloseWrite()
			}
		}()
		go func() {
			defer wg.Done()
			got, err := io.CopyBuffer(io.Discard, io.LimitReader(to, n), make([]byte, 64<<10))
			if err == nil && got != n {
				err = fmt.Errorf("read %d of %d bytes", got, n)
			}
			errs <- err
		}()
	}
	start := time.Now()
	oneWay(c1, c2)
	total := n
	if both {
		oneWay(c2, c1)
		total *= 2
	}
	wg.Wait()
	d := time.Since(start)
	close(errs)
	for err := range errs {
		if err != nil {
			return 0, err
		}
	}
	return float64(total) / d.Seconds() / 1e6, nil
}

func xtlsRate(a, b *party, n int64, both bool) (float64, error) {
	c1, c2, err := pipe(a, b)
	if err != nil {
		return 0, err
	}
	defer c1.Close()
	defer c2.Close()
	return transfer(c1, c2, n, both)
}

func ibbRate(a, b *party, n int64) (float64, error) {
	ln := b.ibb.Listen(b.s)
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(acc)
			return
		}
		acc <- c
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c1, err := a.ibb.Open(ctx, a.s, b.addr)
	if err != nil {
		return 0, err
	}
	c2, ok := <-acc
	if !ok {
		return 0, errors.New("ibb accept failed")
	}
	defer c2.Close()
	// ibb has no half-close: the reader counts bytes; Flush pushes the
	// last block. Its Conn writes through a base64.Encoder that keeps a
	// trailing partial group of 1-2 bytes until Close, so move a multiple
	// of 768 bytes (ibb's 1024 Base64 characters per IQ).
	n -= n % 768
	w := flushOnEnd{c1}
	rate, err := transfer(w, c2, n, false)
	c1.Close()
	return rate, err
}

// flushOnEnd gives an ibb.Conn the CloseWrite that transfer calls: a
// flush of the last partial block.
type flushOnEnd struct{ *ibb.Conn }

func (f flushOnEnd) CloseWrite() error { return f.Flush() }

// ceiling sends n bytes as Base64 chunks in IQ-sets, inflight outstanding,
// which the peer answers at once: the most any tunnel on this stack can do.
func ceiling(a, b *party, n int64, chunk, inflight int) (float64, error) {
	raw := make([]byte, chunk)
	rand.Read(raw)
	b64 := base64.StdEncoding.EncodeToString(raw)
	count := int((n + int64(chunk) - 1) / int64(chunk))
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, inflight)
	start := time.Now()
	for range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(count) {
				iq := stanza.IQ{To: b.addr, Type: stanza.SetIQ}
				payload := xmlstream.Wrap(xmlstream.Token(xml.CharData(b64)), xml.StartElement{Name: xml.Name{Space: benchNS, Local: "data"}})
				resp, err := a.s.SendIQ(context.Background(), iq.Wrap(payload))
				if err != nil {
					errs <- err
					return
				}
				resp.Close()
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(int64(count)*int64(chunk)) / d.Seconds() / 1e6, nil
}

// iqRTT is the median of n small IQ round trips from a to b.
func iqRTT(a, b *party, n int) (time.Duration, error) {
	ds := make([]float64, 0, n)
	for range n {
		iq := stanza.IQ{To: b.addr, Type: stanza.GetIQ}
		start := time.Now()
		resp, err := a.s.SendIQ(context.Background(), iq.Wrap(xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: benchNS, Local: "ping"}})))
		if err != nil {
			return 0, err
		}
		resp.Close()
		ds = append(ds, float64(time.Since(start)))
	}
	return time.Duration(median(ds)), nil
}

// firstByte dials n tunnels one after the other and returns the medians of
// the time from Dial to the peer reading our first byte, and to us reading
// the peer's first byte (the peer writes as soon as it accepts).
func firstByte(a, b *party, n int) (peer, own time.Duration, err error) {
	type mark struct {
		at  time.Time
		err error
	}
	got := make(chan mark, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	serve := func(c net.Conn) {
		defer wg.Done()
		defer c.Close()
		c.Write([]byte{'b'})
		var one [1]byte
		_, err := io.ReadFull(c, one[:])
		got <- mark{time.Now(), err}
		io.Copy(io.Discard, c)
	}
	go func() {
		for range n {
			c, ok := <-b.acc
			if !ok {
				got <- mark{err: errors.New("accept failed")}
				return
			}
			wg.Add(1)
			go serve(c)
		}
	}()
	var ps, os []float64
	for range n {
		start := time.Now()
		c, err := a.h.Dial(context.Background(), b.addr)
		if err != nil {
			return 0, 0, err
		}
		if _, err := c.Write([]byte{'a'}); err != nil {
			return 0, 0, err
		}
		var one [1]byte
		if _, err := io.ReadFull(c, one[:]); err != nil {
			return 0, 0, err
		}
		ownAt := time.Now()
		m := <-got
		if m.err != nil {
			return 0, 0, m.err
		}
		c.Close()
		ps = append(ps, float64(m.at.Sub(start)))
		os = append(os, float64(ownAt.Sub(start)))
	}
	return time.Duration(median(ps)), time.Duration(median(os)), nil
}

// allocsPerMiB moves n bytes one way through a tunnel and counts the
// allocations of the whole process (both ends, mellium's XML included).
func allocsPerMiB(a, b *party, n int64, vals map[string]float64) error {
	c1, c2, err := pipe(a, b)
	if err != nil {
		return err
	}
	defer c1.Close()
	defer c2.Close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if _, err := transfer(c1, c2, n, false); err != nil {
		return err
	}
	runtime.ReadMemStats(&after)
	mib := float64(n) / (1 << 20)
	vals["allocs"] = float64(after.Mallocs-before.Mallocs) / mib
	vals["bytes"] = float64(after.TotalAlloc-before.TotalAlloc) / mib / 1024
	return nil
}

// memory opens k tunnels over one session and measures the heap they hold
// idle, then while all of them move 64 KiB each way at once.
func memory(a, b *party, k int, vals map[string]float64, log io.Writer) error {
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	base := heap()
	c1s := make([]net.Conn, k)
	c2s := make([]net.Conn, 0, k)
	defer func() {
		for _, c := range c1s {
			if c != nil {
				c.Close()
			}
		}
		for _, c := range c2s {
			c.Close()
		}
	}()
	var wg sync.WaitGroup
	var firstErr error
	var mu sync.Mutex
	sem := make(chan struct{}, 16)
	start := time.Now()
	for i := range k {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			c, err := a.h.Dial(ctx, b.addr)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			c1s[i] = c
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	for range k {
		c, ok := <-b.acc
		if !ok {
			return errors.New("accept failed")
		}
		c2s = append(c2s, c)
	}
	fmt.Fprintf(log, "  %d tunnels open in %v\n", k, time.Since(start).Round(time.Millisecond))
	idle := heap()
	vals["idle"] = float64(int64(idle)-int64(base)) / float64(k) / 1024

	// All tunnels move 64 KiB each way at once; sample the heap meanwhile.
	const per = 64 << 10
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				if m.HeapAlloc > peak.Load() {
					peak.Store(m.HeapAlloc)
				}
			}
		}
	}()
	durs := make([]float64, k)
	errs := make(chan error, 2*k)
	start = time.Now()
	for i := range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			_, err := exchangeSmall(c1s[i], c2s[i], per)
			durs[i] = float64(time.Since(t0))
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	fmt.Fprintf(log, "  %d tunnels moved %d KiB each way in %v\n", k, per>>10, time.Since(start).Round(time.Millisecond))
	vals["active"] = float64(int64(peak.Load())-int64(base)) / float64(k) / 1024
	vals["spread"] = slices.Max(durs) / median(durs)
	return nil
}

// exchangeSmall writes n bytes each way on an established pair and reads
// them; it does not close the tunnels.
func exchangeSmall(c1, c2 net.Conn, n int) (int, error) {
	buf := make([]byte, n)
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for _, p := range [][2]net.Conn{{c1, c2}, {c2, c1}} {
		wg.Add(2)
		go func() { defer wg.Done(); _, err := p[0].Write(buf); errs <- err }()
		go func() {
			defer wg.Done()
			_, err := io.ReadFull(p[1], make([]byte, n))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return 0, err
		}
	}
	return n, nil
}

// tlsTCPRate is crypto/tls 1.3 over TCP loopback: the physical reference.
func tlsTCPRate(n int64) (float64, error) {
	cert, err := xtls.GenerateCertificate(jid.MustParse("bench.localhost"))
	if err != nil {
		return 0, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(acc)
			return
		}
		sc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		if err := sc.Handshake(); err != nil {
			c.Close()
			close(acc)
			return
		}
		acc <- sc
	}()
	c1, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return 0, err
	}
	defer c1.Close()
	c2, ok := <-acc
	if !ok {
		return 0, errors.New("accept failed")
	}
	defer c2.Close()
	return transfer(c1, c2, n, false)
}

// tlsTCPFirstByte is firstByte's floor: the time from Dial to the server
// reading the client's first byte over TCP loopback with TLS 1.3 and a
// client certificate, as xtls does it, so what remains of xtls's figure is
// the XMPP path's. The median of n dials.
func tlsTCPFirstByte(n int) (time.Duration, error) {
	scert, err := xtls.GenerateCertificate(jid.MustParse("bench.localhost"))
	if err != nil {
		return 0, err
	}
	ccert, err := xtls.GenerateCertificate(jid.MustParse("client.localhost"))
	if err != nil {
		return 0, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	got := make(chan time.Time, 1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			sc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{scert}, ClientAuth: tls.RequireAnyClientCert})
			var one [1]byte
			io.ReadFull(sc, one[:])
			got <- time.Now()
			sc.Close()
		}
	}()
	var ds []float64
	for range n {
		start := time.Now()
		c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{ccert}})
		if err != nil {
			return 0, err
		}
		if _, err := c.Write([]byte{'a'}); err != nil {
			return 0, err
		}
		ds = append(ds, float64((<-got).Sub(start)))
		c.Close()
	}
	return time.Duration(median(ds)), nil
}

// atRTT logs two more clients in through toxiproxy, each link delayed by a
// quarter of rtt each way, so that an IQ from one client to the other and
// its answer take rtt more, and measures xtls and ibb between them.
func atRTT(srv *harness.Server, rtt time.Duration, o options, vals map[string]float64, log io.Writer) error {
	api := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	var via []string
	for i := range 2 {
		p := toxiproxy.NewProxy(api, fmt.Sprintf("c2s%d", i), "127.0.0.1:0", srv.Addr())
		if err := p.Start(); err != nil {
			return err
		}
		defer p.Stop()
		for _, stream := range []string{"upstream", "downstream"} {
			spec := fmt.Sprintf(`{"type":"latency","stream":%q,"attributes":{"latency":%d}}`, stream, (rtt / 4).Milliseconds())
			if _, err := p.Toxics.AddToxicJson(strings.NewReader(spec)); err != nil {
				return err
			}
		}
		via = append(via, p.Listen)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := loginVia(ctx, srv, via[0], "alice", tuning{chunk: o.chunk})
	if err != nil {
		return err
	}
	defer a.close()
	b, err := loginVia(ctx, srv, via[1], "bob", tuning{chunk: o.chunk})
	if err != nil {
		return err
	}
	defer b.close()
	measured, err := iqRTT(a, b, 20)
	if err != nil {
		return err
	}
	var xs, is []float64
	for range o.runs {
		x, err := xtlsRate(a, b, o.rttSize, false)
		if err != nil {
			return err
		}
		i, err := ibbRate(a, b, max(o.rttSize/10, 768))
		if err != nil {
			return err
		}
		xs, is = append(xs, x), append(is, i)
	}
	x, i := median(xs), median(is)
	vals[fmt.Sprintf("x@%v", rtt)], vals[fmt.Sprintf("i@%v", rtt)], vals[fmt.Sprintf("r@%v", rtt)] = x, i, x/i
	// Where the round trip dominates the CPU work, first-byte latency in
	// round trips is the protocol's: start + ClientHello, proceed +
	// ServerHello, Finished + data.
	peer, _, err := firstByte(a, b, o.dials)
	if err != nil {
		return fmt.Errorf("first byte: %w", err)
	}
	vals[fmt.Sprintf("f@%v", rtt)] = float64(peer) / float64(measured)
	fmt.Fprintf(log, "  at %v (IQ RTT measured %.1f ms): xtls %v, ibb %v MB/s, first byte %.1f ms\n", rtt, ms(measured), round(xs), round(is), ms(peer))
	return nil
}

// loginVia is login through another address that leads to the server.
func loginVia(ctx context.Context, srv *harness.Server, via, user string, t tuning) (*party, error) {
	return loginWith(ctx, srv, user, t, func(ctx context.Context) (*xmpp.Session, error) {
		return srv.ConnectVia(ctx, via, user, user+"-secret", nil)
	})
}

// cpuUse is CPU time spent by this process (both clients) and by the
// server, and the wall time, over some runs.
type cpuUse struct {
	self, server, wall time.Duration
	// the server's read and write system calls and its voluntary and
	// involuntary context switches
	reads, writes, vol, invol int64
}

func (u *cpuUse) add(v cpuUse) {
	u.self += v.self
	u.server += v.server
	u.wall += v.wall
	u.reads += v.reads
	u.writes += v.writes
	u.vol += v.vol
	u.invol += v.invol
}

func (u cpuUse) per(mb float64) string {
	f := func(d time.Duration) float64 { return ms(d) / mb }
	g := func(n int64) float64 { return float64(n) / mb }
	return fmt.Sprintf("%.1f / %.1f / %.1f (server per MB: %.0f reads, %.0f writes, %.0f+%.0f switches)", f(u.self), f(u.server), f(u.wall), g(u.reads), g(u.writes), g(u.vol), g(u.invol))
}

// cpuMeter measures one run.
type cpuMeter struct {
	pid   int
	start cpuUse
	at    time.Time
}

func startCPU(pid int) cpuMeter {
	return cpuMeter{pid: pid, start: cpuNow(pid), at: time.Now()}
}

func (m cpuMeter) stop() cpuUse {
	now := cpuNow(m.pid)
	return cpuUse{self: now.self - m.start.self, server: now.server - m.start.server, wall: time.Since(m.at),
		reads: now.reads - m.start.reads, writes: now.writes - m.start.writes, vol: now.vol - m.start.vol, invol: now.invol - m.start.invol}
}
