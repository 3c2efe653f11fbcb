package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// Parser parses a program's command line: the common flags (Options),
// the program's own (define them on FS), and the words, with flags
// allowed after the words too.
type Parser struct {
	FS     *flag.FlagSet
	name   string
	stderr io.Writer
}

// NewParser returns a parser for the program name whose usage lines are
// usage; it defines o's flags.
func NewParser(name, usage string, o *Options, stderr io.Writer) *Parser {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.Flags(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, usage)
		fs.PrintDefaults()
	}
	return &Parser{FS: fs, name: name, stderr: stderr}
}

// Parse parses args, reads the profile into o and checks our account. It
// returns the words, or a non-negative exit status if the program must
// stop (bad usage, or -help).
func (p *Parser) Parse(args []string, o *Options) ([]string, int) {
	words, code := p.ParseFlags(args)
	if code >= 0 {
		return nil, code
	}
	if err := o.Resolve(); err != nil {
		return nil, p.Usagef("%v", err)
	}
	if _, err := o.Self(); err != nil {
		return nil, p.Usagef("%v", err)
	}
	return words, -1
}

// ParseFlags parses args and returns the words, or a non-negative exit
// status if the program must stop (bad usage, or -help). It neither reads
// the profile nor checks the account: see Parse.
func (p *Parser) ParseFlags(args []string) ([]string, int) {
	words, err := ParseArgs(p.FS, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, ExitOK
		}
		return nil, ExitUsage
	}
	return words, -1
}

// Usagef prints a message and the usage, and returns ExitUsage.
func (p *Parser) Usagef(format string, a ...any) int {
	fmt.Fprintf(p.stderr, p.name+": "+format+"\n", a...)
	p.FS.Usage()
	return ExitUsage
}
