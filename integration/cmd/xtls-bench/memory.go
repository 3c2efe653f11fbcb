package main

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// memoryResult is what tunnels cost in memory: heap per tunnel idle and
// moving data, with -tunnels tunnels over one session, how evenly they
// share it, and allocations per MiB of payload.
type memoryResult struct {
	idleKiB, activeKiB float64 // heap per tunnel, both ends
	spread             float64 // slowest / median tunnel, all moving at once
	allocs, allocKiB   float64 // per MiB moved, both ends, mellium included
}

func (r *memoryResult) rows() []row {
	return []row{
		{label: "heap per idle tunnel (both ends)", unit: "KiB", v: r.idleKiB},
		{label: "heap per tunnel moving data (both ends)", unit: "KiB", v: r.activeKiB},
		{label: "slowest / median tunnel, all moving at once", unit: "×", v: r.spread},
		{label: "allocations per MiB (both ends, mellium included)", unit: "allocs", v: r.allocs},
		{label: "bytes allocated per MiB (both ends, mellium included)", unit: "KiB", v: r.allocKiB},
	}
}

func measureMemory(e *env) (*memoryResult, error) {
	var r memoryResult
	if err := allocsPerMiB(e.a, e.b, e.o.size, &r); err != nil {
		return nil, err
	}
	if err := memory(e.a, e.b, e.o.tunnels, &r, e); err != nil {
		return nil, err
	}
	return &r, nil
}

// allocsPerMiB moves n bytes one way through a tunnel and counts the
// allocations of the whole process (both ends, mellium's XML included).
func allocsPerMiB(a, b *party, n int64, r *memoryResult) error {
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
	r.allocs = float64(after.Mallocs-before.Mallocs) / mib
	r.allocKiB = float64(after.TotalAlloc-before.TotalAlloc) / mib / 1024
	return nil
}

// memory opens k tunnels over one session and measures the heap they hold
// idle, then while all of them move 64 KiB each way at once.
func memory(a, b *party, k int, r *memoryResult, e *env) error {
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
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
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
	e.logf("  %d tunnels open in %v", k, time.Since(start).Round(time.Millisecond))
	idle := heap()
	r.idleKiB = float64(int64(idle)-int64(base)) / float64(k) / 1024

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
	e.logf("  %d tunnels moved %d KiB each way in %v", k, per>>10, time.Since(start).Round(time.Millisecond))
	r.activeKiB = float64(int64(peak.Load())-int64(base)) / float64(k) / 1024
	r.spread = slices.Max(durs) / median(durs)
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
