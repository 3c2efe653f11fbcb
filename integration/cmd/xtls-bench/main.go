// Command xtls-bench measures xtls through real Prosody and ejabberd servers
// side by side with what a user could otherwise use, and prints one table.
//
//	make bench                       # or: go run ./integration/cmd/xtls-bench
//	go run ./integration/cmd/xtls-bench -runs 5 -size 32 -servers prosody
//	go run ./integration/cmd/xtls-bench -measure latency,goroutines
//	go run ./integration/cmd/xtls-bench -cpuprofile cpu.out -memprofile mem.out
//
// It starts private servers with the integration harness (127.0.0.1 only,
// temporary directories, Prosody and ejabberd untuned and, unless a row
// says "stock limits", with their client limits removed), logs in two
// clients on each and measures, each row the median of -runs runs. Each
// measurement lives in its own file with a typed result that lists its
// rows:
//
//   - throughput.go: xtls, payload MB/s through one tunnel (TLS 1.3 inside)
//     one way, in alternation with the raw ceiling of this stack: pipelined
//     IQ-sets carrying Base64 chunks of the tunnel's chunk size (the
//     Handler's choice for the server unless -chunk sets it), -inflight
//     outstanding, answered at once, no TLS, no reassembly. Their ratio is
//     the median of the ratios of neighbouring runs. On Linux the same runs
//     report how busy the server's CPU was and the CPU time per MB of the
//     server and of the clients: a server that is not busy waits for
//     something, which is where a tunnel loses against the ceiling;
//   - rates.go: xtls both ways at once, mellium's ibb (XEP-0047, the library
//     a user would otherwise reach for), crypto/tls over TCP loopback (the
//     physical reference);
//   - firstbyte.go: time from Dial to the first application byte, in ms and
//     in IQ round trips (the median of 200 small IQ round trips measured in
//     the same run);
//   - memory.go: heap per idle tunnel and per tunnel moving data at -tunnels
//     tunnels over one session, and allocations per MiB of payload;
//   - distance.go: xtls against ibb with the two clients -rtt apart: two
//     more clients log in through toxiproxy (in-process, 127.0.0.1), each
//     link delayed by a quarter of the round trip each way;
//   - latency.go: latency under load, for each -latency setup (direct,
//     clients 50 ms apart, the servers' stock limits): an XEP-0199 ping and
//     a 100-byte echo over a second tunnel, idle and while one tunnel moves
//     bulk data, against the target 3 × idle p50 + 10 ms, with the bulk
//     tunnel's rate and retransmissions;
//   - bytestream.go: bulk off the IQ path, on the server with its stock
//     client limits and its SOCKS5 bytestream proxy (XEP-0065): the
//     proxy's ceiling (raw bytes between two clients) in alternation with
//     one xtls tunnel moved onto it, -size MiB one way each, their ratio;
//     one -bs-big MiB transfer with the default policy and SHA-256 at both
//     ends; the first byte after Dial with bytestreams on and off. A
//     tunnel that does not move or a hash that differs fails the command
//     after the table;
//   - goroutines.go: goroutines per session with data IQs in flight on 10
//     tunnels.
//
// -quick measures only throughput.go's rows; -measure picks any groups;
// -prosody-readsize and -prosody-nodelay start a tuned Prosody to compare
// with:
//
//	go run ./integration/cmd/xtls-bench -quick -servers prosody -runs 5 -size 32
//	go run ./integration/cmd/xtls-bench -quick -servers prosody -prosody-readsize 65536
//
// MB is 10^6 bytes of payload, not of Base64. Both clients and the server
// share the machine, so absolute figures drift: read the ratios.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/xmppxtls/xtls/integration/harness"
)

// groups are the measurements -measure chooses from, in table order.
var groups = []string{"throughput", "rates", "firstbyte", "memory", "distance", "latency", "bytestream", "goroutines"}

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
	latency  []latencySetup
	pings    int   // probes of each kind per phase, unlimited setups
	bsBig    int64 // bytes of the big transfer over the proxy
	measure  map[string]bool
	cpuProf  string
	memProf  string
	// prosodyNoNagle and prosodyReadSize tune the Prosody under test.
	prosodyNoNagle  bool
	prosodyReadSize int
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if err != flag.ErrHelp {
			fmt.Fprintf(stderr, "xtls-bench: %v\n", err)
		}
		return 2
	}
	var cols []column
	var failed []string
	for _, name := range o.servers {
		fmt.Fprintf(stderr, "== %s\n", name)
		res, err := benchServer(name, o, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "xtls-bench: %s: %v\n", name, err)
			return 1
		}
		cols = append(cols, res.column())
		for _, f := range res.failures() {
			failed = append(failed, name+": "+f)
		}
	}
	if o.memProf != "" {
		f, err := os.Create(o.memProf)
		if err == nil {
			pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	header := fmt.Sprintf("xtls-bench %s  %s/%s  %d CPUs  %s  median of %d runs, %d MiB (ibb %d MiB), ceiling %d IQs in flight, %d tunnels",
		time.Now().Format("2006-01-02"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(),
		o.runs, o.size>>20, o.ibbSize>>20, o.inflight, o.tunnels)
	if o.measure["latency"] && len(o.latency) > 0 {
		header += "\n" + latencyLegend
	}
	printTable(stdout, header, cols)
	return reportFailures(stderr, failed)
}

// reportFailures prints the checks that failed and returns the exit
// code: 1 if any did, so that a wrong hash, say, does not pass unseen
// below a table of numbers.
func reportFailures(stderr io.Writer, failed []string) int {
	for _, f := range failed {
		fmt.Fprintf(stderr, "xtls-bench: FAILED: %s\n", f)
	}
	if len(failed) > 0 {
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("xtls-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var sizeMiB, ibbMiB, rttMiB, bsBigMiB int
	var servers, rtts, latency, measure string
	var quick bool
	fs.IntVar(&o.runs, "runs", 3, "runs per row (the median is shown)")
	fs.IntVar(&sizeMiB, "size", 64, "MiB per xtls, ceiling and TLS run")
	fs.IntVar(&ibbMiB, "ibb-size", 8, "MiB per ibb run (ibb is slow; MB/s does not depend on it)")
	fs.IntVar(&o.inflight, "inflight", 32, "IQs outstanding in the raw ceiling")
	fs.IntVar(&o.chunk, "chunk", 0, "payload bytes per data IQ: the tunnels' transport.Config.ChunkSize and the ceiling's chunk; 0 leaves the choice to the Handler (2880 on Prosody, 5120 otherwise) and gives the ceiling the same")
	fs.IntVar(&o.tunnels, "tunnels", 1000, "tunnels over one session for the memory rows")
	fs.IntVar(&o.dials, "dials", 20, "dials for the first-byte row")
	fs.StringVar(&servers, "servers", "prosody,ejabberd", "servers to measure")
	fs.StringVar(&rtts, "rtt", "10ms,50ms", "round trips between the two clients (through toxiproxy on each client's link) for the xtls-vs-ibb rows; empty for none")
	fs.IntVar(&rttMiB, "rtt-size", 4, "MiB per xtls run at a round trip (ibb moves a tenth)")
	fs.StringVar(&latency, "latency", "direct,50ms,stock", "setups for the latency-under-load rows: direct (loopback), a round trip between the clients (e.g. 50ms, through toxiproxy), stock (the servers' stock client limits, harness.StockLimits); empty for none")
	fs.IntVar(&o.pings, "pings", 200, "pings, and echoes, per phase of a latency run without limits (the stock-limits setup sends fewer, slower: see latency.go)")
	fs.IntVar(&bsBigMiB, "bs-big", 256, "MiB of the one big transfer over the server's proxy with SHA-256 at both ends (bytestream rows)")
	fs.StringVar(&measure, "measure", "all", "measurements to run: all, or some of "+strings.Join(groups, ","))
	fs.StringVar(&o.cpuProf, "cpuprofile", "", "write a CPU profile of the measurements of the first server to this file")
	fs.StringVar(&o.memProf, "memprofile", "", "write an allocation profile to this file at the end")
	fs.BoolVar(&quick, "quick", false, "measure only xtls one way and the raw ceiling (for tuning experiments): -measure throughput")
	fs.BoolVar(&o.prosodyNoNagle, "prosody-nodelay", false, "start Prosody with network_settings = { nagle = false }")
	fs.IntVar(&o.prosodyReadSize, "prosody-readsize", 0, "start Prosody with this network_default_read_size (0: its default, 4096)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.size, o.ibbSize = int64(sizeMiB)<<20, int64(ibbMiB)<<20
	o.rttSize = int64(rttMiB) << 20
	o.bsBig = int64(bsBigMiB) << 20
	for _, r := range strings.Split(rtts, ",") {
		if r == "" {
			continue
		}
		d, err := time.ParseDuration(r)
		if err != nil || d <= 0 {
			return o, fmt.Errorf("bad -rtt %q", r)
		}
		o.rtts = append(o.rtts, d)
	}
	var err error
	if o.latency, err = parseLatencySetups(latency); err != nil {
		return o, err
	}
	o.servers = strings.Split(servers, ",")
	o.measure = map[string]bool{}
	if quick {
		measure = "throughput"
	}
	for _, m := range strings.Split(measure, ",") {
		switch {
		case m == "all":
			for _, g := range groups {
				o.measure[g] = true
			}
		case slices.Contains(groups, m):
			o.measure[m] = true
		default:
			return o, fmt.Errorf("-measure %q: want all or some of %s", m, strings.Join(groups, ","))
		}
	}
	if o.runs < 1 || o.pings < 1 || sizeMiB < 1 || bsBigMiB < 1 {
		return o, fmt.Errorf("-runs, -pings, -size and -bs-big must be positive")
	}
	return o, nil
}

// env is what the measurements of one server work with.
type env struct {
	o    options
	name string          // "prosody" or "ejabberd"
	srv  *harness.Server // without client limits
	a, b *party          // alice and bob, logged in to srv
	log  io.Writer
	// stock is the server with the stock limits and its proxy, once
	// stockServer started it.
	stock *harness.Server
}

func (e *env) logf(format string, args ...any) { fmt.Fprintf(e.log, format+"\n", args...) }

// stockServer returns the server with the stock client limits
// (harness.StockLimits) and its SOCKS5 bytestream proxy, started on first
// use and shared by the latency and bytestream rows; benchServer closes it.
func (e *env) stockServer() (*harness.Server, error) {
	if e.stock == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		srv, err := startServer(ctx, e.name, e.o, harness.StockLimits, true)
		if err != nil {
			return nil, fmt.Errorf("the server with the stock limits: %w", err)
		}
		e.stock = srv
	}
	return e.stock, nil
}

// startServer starts the server name with the given limits, its SOCKS5
// bytestream proxy if proxy65, and the accounts alice and bob; the caller
// closes it.
func startServer(ctx context.Context, name string, o options, limits harness.Limits, proxy65 bool) (*harness.Server, error) {
	var srv *harness.Server
	var err error
	switch name {
	case "prosody":
		srv, err = harness.StartProsody(ctx, harness.ProsodyOptions{Limits: limits, Proxy65: proxy65, DisableNagle: o.prosodyNoNagle, ReadSize: o.prosodyReadSize})
	case "ejabberd":
		srv, err = harness.StartEjabberd(ctx, harness.EjabberdOptions{Limits: limits, Proxy65: proxy65})
	default:
		return nil, fmt.Errorf("unknown server %q (prosody or ejabberd)", name)
	}
	if err != nil {
		return nil, err
	}
	for _, u := range []string{"alice", "bob"} {
		if err := srv.AddUser(ctx, u, u+"-secret"); err != nil {
			srv.Close()
			return nil, err
		}
	}
	return srv, nil
}

// results is everything measured on one server; a nil field was not
// measured.
type results struct {
	name       string
	throughput *throughputResult
	rates      *ratesResult
	firstByte  *firstByteResult
	memory     *memoryResult
	distances  []*distanceResult
	latency    []*latencyResult
	bytestream *bytestreamResult
	goroutines *goroutineResult
}

// failures lists the checks that failed in any measurement.
func (r *results) failures() []string {
	if r.bytestream == nil {
		return nil
	}
	return r.bytestream.failed
}

// column lists the rows of every measurement, in table order.
func (r *results) column() column {
	c := column{name: r.name}
	add := func(rs interface{ rows() []row }) { c.rows = append(c.rows, rs.rows()...) }
	if r.throughput != nil {
		add(r.throughput)
	}
	if r.rates != nil {
		add(r.rates)
	}
	if r.firstByte != nil {
		add(r.firstByte)
	}
	if r.memory != nil {
		add(r.memory)
	}
	for _, d := range r.distances {
		add(d)
	}
	for _, l := range r.latency {
		add(l)
	}
	if r.bytestream != nil {
		add(r.bytestream)
	}
	if r.goroutines != nil {
		add(r.goroutines)
	}
	return c
}

func benchServer(name string, o options, log io.Writer) (*results, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := startServer(ctx, name, o, harness.Unlimited, false)
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	a, err := login(ctx, srv, "alice", tuning{chunk: o.chunk})
	if err != nil {
		return nil, err
	}
	defer a.close()
	b, err := login(ctx, srv, "bob", tuning{chunk: o.chunk})
	if err != nil {
		return nil, err
	}
	defer b.close()
	e := &env{o: o, name: name, srv: srv, a: a, b: b, log: log}
	defer func() {
		if e.stock != nil {
			e.stock.Close()
		}
	}()
	res := &results{name: name}

	if o.cpuProf != "" && name == o.servers[0] {
		f, err := os.Create(o.cpuProf)
		if err != nil {
			return nil, err
		}
		pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	if o.measure["throughput"] {
		if res.throughput, err = measureThroughput(e); err != nil {
			return nil, err
		}
	}
	if o.measure["rates"] {
		tp := res.throughput
		if tp == nil {
			tp = &throughputResult{xtls: nan(), ceiling: nan()}
		}
		if res.rates, err = measureRates(e, tp); err != nil {
			return nil, err
		}
	}
	if o.measure["firstbyte"] {
		if res.firstByte, err = measureFirstByte(e); err != nil {
			return nil, err
		}
	}
	if o.measure["distance"] {
		for _, d := range o.rtts {
			r, err := measureDistance(e, d)
			if err != nil {
				return nil, fmt.Errorf("at %v: %w", d, err)
			}
			res.distances = append(res.distances, r)
		}
	}
	if o.measure["memory"] {
		if res.memory, err = measureMemory(e); err != nil {
			return nil, err
		}
	}
	if o.measure["latency"] {
		for _, s := range o.latency {
			r, err := measureLatency(e, s)
			if err != nil {
				return nil, fmt.Errorf("latency, %s: %w", s, err)
			}
			res.latency = append(res.latency, r)
		}
	}
	if o.measure["bytestream"] {
		if res.bytestream, err = measureBytestream(e); err != nil {
			return nil, fmt.Errorf("bytestream: %w", err)
		}
	}
	if o.measure["goroutines"] {
		if res.goroutines, err = measureGoroutines(e); err != nil {
			return nil, fmt.Errorf("goroutines: %w", err)
		}
	}
	return res, nil
}
