package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/examples/internal/cli"
	"github.com/xmppxtls/xtls/xtls"
)

// receiver is one run of receive.
type receiver struct {
	o     *options
	errw  io.Writer
	root  *os.Root
	conn  *xtls.Conn
	fw    *frameWriter
	fr    *frameReader
	offer Offer
	have  []target
	got   int64 // data bytes received this run
	files int   // files complete
}

// target is what we have of a file of the offer.
type target struct {
	n     int64     // its first n bytes
	final bool      // under its own name (complete), not as a part file
	h     hash.Hash // SHA-256 of those n bytes
}

func (r *receiver) say(format string, a ...any) {
	if !r.o.Quiet {
		fmt.Fprintf(r.errw, "xtls-file: "+format+"\n", a...)
	}
}

// receive is the receiving side.
func receive(ctx context.Context, o *options, stdin io.Reader, errw io.Writer) error {
	r := &receiver{o: o, errw: errw}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return localError(err)
	}
	root, err := os.OpenRoot(o.out)
	if err != nil {
		return localError(err)
	}
	defer root.Close()
	r.root = root
	self, _ := o.Self()
	id, err := o.OpenIdentity(self)
	if err != nil {
		return &cli.Failure{Code: cli.ExitUsage, Err: err}
	}
	pins := &cli.ConfirmPins{PinStore: id.Pins}
	failed, acceptFailed := cli.Failures()
	cfg := &xtls.Config{Certificate: id.Cert, Pins: pins, TrustOnFirstUse: true, Logger: o.Logger(errw), AcceptFailed: acceptFailed, Reattach: cli.NoReattach}
	cfg.Transport = transportConfig
	if len(o.from) > 0 {
		cfg.AcceptPeer = func(peer jid.JID) bool {
			return slices.ContainsFunc(o.from, func(j jid.JID) bool { return j.Equal(peer.Bare()) })
		}
	}
	party, err := cli.Start(ctx, connect, &o.Options, cfg)
	if err != nil {
		return err
	}
	defer party.Close()
	r.say("logged in as %s", party.Addr())
	// Listen before saying so: a sender may start as soon as it is said.
	ln := party.Handler.Listen()
	defer ln.Close() // one transfer per run
	r.say("waiting for a transfer: the sender runs  xtls-file send %s PATH...", party.Addr())
	r.conn, err = cli.Accept(ctx, ln, failed, 0, func(f cli.Failed) error {
		var pin *xtls.PinMismatchError
		if errors.As(f.Err, &pin) {
			return &cli.Failure{Code: cli.ExitTrust, Err: errors.New(cli.KeyChangeMessage(pin, &r.o.Options))}
		}
		r.say("a transfer from %s failed (%v); still waiting", f.Peer, f.Err)
		return nil
	})
	if err != nil {
		return err
	}
	st := r.conn.State()
	var act activity
	act.touch()
	r.fw = newFrameWriter(r.conn, false, &act)
	r.fr = newFrameReader(r.conn, &act)
	stopAlive := keepAlive(r.fw)
	stop := context.AfterFunc(ctx, func() { r.conn.SetReadDeadline(time.Now()) })
	err = r.run(ctx, st, pins, stdin)
	stopAlive()
	if !stop() || ctx.Err() != nil {
		abortConn(r.conn, r.fw, cli.Why(ctx).Error())
		return &cli.Failure{Code: cli.ExitInterrupted, Err: fmt.Errorf("%v: received %d bytes, kept in %s; run the same command again to resume", cli.Why(ctx), r.got, o.out)}
	}
	if err != nil {
		var f *cli.Failure
		var pe *ProtocolError
		switch {
		case errors.As(err, &f) && f.Code != cli.ExitBroken:
			abortConn(r.conn, r.fw, err.Error())
		case errors.As(err, &pe):
			abortConn(r.conn, r.fw, pe.Error())
		default:
			r.conn.Close()
		}
		return streamFailure(err, st)
	}
	return nil
}

// run reads the offer, asks, and receives.
func (r *receiver) run(ctx context.Context, st xtls.State, pins *cli.ConfirmPins, stdin io.Reader) error {
	body, err := r.fr.expect(frameOffer)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, &r.offer); err != nil {
		return protocolErrorf("offer: %v", err)
	}
	if err := r.offer.check(); err != nil {
		return err
	}
	acc, already, err := r.scan()
	if err != nil {
		r.fw.write(frameDecline, []byte("the receiver cannot take these files: "+err.Error()))
		return localError(err)
	}
	r.show(st, already)
	bare := st.Peer.Bare()
	if r.o.yes && st.Trust == xtls.TrustFirstUse {
		pins.Discard(bare)
		r.fw.write(frameDecline, []byte("not pinned: the receiver accepts only known senders without asking"))
		return cli.Fail(cli.ExitTrust, "%s is not pinned, and -yes accepts only senders whose key is: run without -yes to compare its key and confirm, or pair first (xtls-pair)", bare)
	}
	if !r.o.yes {
		abs, _ := filepath.Abs(r.o.out)
		fmt.Fprintf(r.errw, "xtls-file: receive into %s? [y/N] ", abs)
		answer, err := readLine(ctx, stdin)
		if ctx.Err() != nil {
			pins.Discard(bare)
			return ctx.Err()
		}
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			pins.Discard(bare)
			r.fw.write(frameDecline, []byte("the receiver said no"))
			if err != nil && answer == "" {
				return cli.Fail(cli.ExitOther, "declined: no answer (%v)", err)
			}
			return cli.Fail(cli.ExitOther, "declined: nothing received")
		}
	}
	if err := pins.Confirm(bare); err != nil {
		return localError(err)
	}
	if st.Trust == xtls.TrustFirstUse {
		r.say("pinned the key of %s", bare)
	}
	for _, e := range r.offer.Entries {
		if e.Dir {
			if err := r.root.MkdirAll(filepath.FromSlash(e.Path), 0o755); err != nil {
				return localError(err)
			}
		}
	}
	if err := r.fw.writeJSON(frameAccept, acc); err != nil {
		return err
	}
	var prog *cli.Progress
	if !r.o.Quiet {
		prog = cli.StartProgress(r.errw, "xtls-file: ", r.offer.Total(), already)
		defer prog.Stop()
	}
	start := time.Now()
	if err := r.receive(prog); err != nil {
		return err
	}
	if prog != nil {
		prog.Stop()
	}
	el := time.Since(start)
	abs, _ := filepath.Abs(r.o.out)
	r.say("done: %d files from %s in %s, SHA-256 verified; received %d bytes (%d were already here) in %v, %s%s",
		r.files, bare, abs, r.got, already, el.Round(time.Millisecond), rate(r.got, el), "; "+cli.PathNote(r.conn))
	// The sender closes first; then we do.
	r.conn.SetReadDeadline(time.Now().Add(closeWait))
	io.Copy(io.Discard, r.conn)
	closeConn(r.conn)
	return nil
}

// scan finds what we have of each file already, and refuses to overwrite
// a different file unless -overwrite.
func (r *receiver) scan() (Accept, int64, error) {
	var acc Accept
	var already int64
	r.have = make([]target, len(r.offer.Entries))
	for i, e := range r.offer.Entries {
		name := filepath.FromSlash(e.Path)
		fi, err := r.root.Lstat(name)
		switch {
		case err == nil && e.Dir:
			if !fi.IsDir() {
				return acc, 0, fmt.Errorf("%s exists and is not a folder", e.Path)
			}
			continue
		case e.Dir:
			continue
		case err == nil && !fi.Mode().IsRegular():
			return acc, 0, fmt.Errorf("%s exists and is not a file", e.Path)
		case err == nil && fi.Size() == e.Size:
			h, err := r.hashPrefix(name, e.Size)
			if err != nil {
				return acc, 0, err
			}
			r.have[i] = target{n: e.Size, final: true, h: h}
		case err == nil && !r.o.overwrite:
			return acc, 0, fmt.Errorf("%s exists and differs from the file offered (-overwrite replaces it)", e.Path)
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return acc, 0, err
		default:
			fi, err := r.root.Lstat(name + partSuffix)
			if err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 || fi.Size() > e.Size {
				continue
			}
			h, err := r.hashPrefix(name+partSuffix, fi.Size())
			if err != nil {
				return acc, 0, err
			}
			r.have[i] = target{n: fi.Size(), h: h}
		}
		if t := r.have[i]; t.n > 0 {
			acc.Have = append(acc.Have, Have{I: i, N: t.n, Hash: t.h.Sum(nil)})
			already += t.n
		}
	}
	return acc, already, nil
}

// hashPrefix hashes the first n bytes of a file.
func (r *receiver) hashPrefix(name string, n int64) (hash.Hash, error) {
	f, err := r.root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, f, n); err != nil {
		return nil, err
	}
	return h, nil
}

// show tells who offers what.
func (r *receiver) show(st xtls.State, already int64) {
	type top struct {
		name  string
		dir   bool
		files int
		size  int64
	}
	var tops []*top
	byName := map[string]*top{}
	files := 0
	for _, e := range r.offer.Entries {
		first, _, nested := strings.Cut(e.Path, "/")
		t := byName[first]
		if t == nil {
			t = &top{name: first}
			byName[first] = t
			tops = append(tops, t)
		}
		if e.Dir && !nested {
			t.dir = true
		}
		if !e.Dir {
			t.files++
			t.size += e.Size
			files++
		}
	}
	// Shown even with -q: it is what the user agrees to.
	fmt.Fprintf(r.errw, "xtls-file: %s wants to send you %d files, %s:\n", trustLine(st), files, cli.Size(r.offer.Total()))
	for i, t := range tops {
		if i == 10 {
			fmt.Fprintf(r.errw, "xtls-file:   ... and %d more\n", len(tops)-i)
			break
		}
		if t.dir {
			fmt.Fprintf(r.errw, "xtls-file:   %s/  (%d files, %s)\n", printable(t.name), t.files, cli.Size(t.size))
		} else {
			fmt.Fprintf(r.errw, "xtls-file:   %s  (%s)\n", printable(t.name), cli.Size(t.size))
		}
	}
	if already > 0 {
		fmt.Fprintf(r.errw, "xtls-file: resuming: %s already here\n", cli.Size(already))
	}
}

// afterData, if set, learns how many bytes have been written after each
// data frame. For tests.
var afterData func(got int64)

// current is the file being received.
type current struct {
	i       int
	f       *os.File // nil: complete already
	h       hash.Hash
	written int64
	part    bool
}

// receive reads the files up to the final digest.
func (r *receiver) receive(prog *cli.Progress) error {
	digest := sha256.New()
	var cur *current
	last := -1
	nfiles := 0
	for _, e := range r.offer.Entries {
		if !e.Dir {
			nfiles++
		}
	}
	defer func() {
		if cur != nil && cur.f != nil {
			cur.f.Close()
		}
	}()
	for {
		typ, body, err := r.fr.next()
		if err != nil {
			return err
		}
		switch typ {
		case frameFile:
			if cur != nil {
				return protocolErrorf("file frame inside a file")
			}
			if len(body) != 12 {
				return protocolErrorf("file frame of %d bytes", len(body))
			}
			i, off := int(binary.BigEndian.Uint32(body)), int64(binary.BigEndian.Uint64(body[4:]))
			if i <= last || i >= len(r.offer.Entries) || r.offer.Entries[i].Dir {
				return protocolErrorf("file frame for entry %d", i)
			}
			last = i
			if cur, err = r.open(i, off); err != nil {
				return err
			}
		case frameData:
			if cur == nil {
				return protocolErrorf("data outside a file")
			}
			e := r.offer.Entries[cur.i]
			if cur.f == nil || cur.written+int64(len(body)) > e.Size {
				return protocolErrorf("more data than the size of %s", e.Path)
			}
			if _, err := cur.f.Write(body); err != nil {
				return localError(err)
			}
			cur.h.Write(body)
			cur.written += int64(len(body))
			r.got += int64(len(body))
			if afterData != nil {
				afterData(r.got)
			}
			if prog != nil {
				prog.Add(int64(len(body)))
			}
		case frameEnd:
			if cur == nil || len(body) != 4+sha256.Size || int(binary.BigEndian.Uint32(body)) != cur.i {
				return protocolErrorf("end frame out of place")
			}
			if err := r.finish(cur, body[4:]); err != nil {
				return err
			}
			digest.Write(body[4:])
			cur = nil
			r.files++
		case frameDone:
			if cur != nil || r.files != nfiles {
				return protocolErrorf("done after %d of %d files", r.files, nfiles)
			}
			sum := digest.Sum(nil)
			if !bytes.Equal(body, sum) {
				return cli.Fail(cli.ExitBroken, "the digest of the transfer does not match: the files may not be what was sent")
			}
			return r.fw.write(frameOK, sum)
		default:
			return protocolErrorf("frame %c during the transfer", typ)
		}
	}
}

// open starts file i at off, which must be 0 or what we have.
func (r *receiver) open(i int, off int64) (*current, error) {
	e, t := r.offer.Entries[i], r.have[i]
	name := filepath.FromSlash(e.Path)
	switch {
	case off == t.n && t.final:
		return &current{i: i, h: t.h, written: off}, nil
	case off == t.n && off > 0:
		f, err := r.root.OpenFile(name+partSuffix, os.O_WRONLY, 0)
		if err == nil {
			_, err = f.Seek(off, io.SeekStart)
		}
		if err != nil {
			return nil, localError(err)
		}
		return &current{i: i, f: f, h: t.h, written: off, part: true}, nil
	case off != 0:
		return nil, protocolErrorf("file %d from %d; we have %d", i, off, t.n)
	case t.final && !r.o.overwrite:
		return nil, localError(fmt.Errorf("%s exists and differs from the file sent (-overwrite replaces it)", e.Path))
	}
	f, err := r.root.OpenFile(name+partSuffix, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, localError(err)
	}
	return &current{i: i, f: f, h: sha256.New(), part: true}, nil
}

// finish checks a file's SHA-256 and gives it its name.
func (r *receiver) finish(cur *current, sum []byte) error {
	e := r.offer.Entries[cur.i]
	name := filepath.FromSlash(e.Path)
	if cur.written != e.Size {
		return protocolErrorf("%s ended at %d of %d bytes", e.Path, cur.written, e.Size)
	}
	if !bytes.Equal(cur.h.Sum(nil), sum) {
		if cur.f != nil {
			cur.f.Close()
			cur.f = nil
			r.root.Remove(name + partSuffix)
		}
		return cli.Fail(cli.ExitBroken, "%s: SHA-256 mismatch, the file is not what was sent (removed)", e.Path)
	}
	if cur.f == nil {
		return nil
	}
	err := cur.f.Close()
	cur.f = nil
	if err == nil {
		err = r.root.Chmod(name+partSuffix, 0o644|fs.FileMode(e.Mode)&0o111)
	}
	if err == nil {
		err = r.root.Rename(name+partSuffix, name)
	}
	if err != nil {
		return localError(err)
	}
	return nil
}

// readLine reads a line of r, unless ctx ends first.
func readLine(ctx context.Context, r io.Reader) (string, error) {
	type result struct {
		line string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadString('\n')
		ch <- result{line, err}
	}()
	select {
	case res := <-ch:
		return res.line, res.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}
