package transport

// readBuf holds the data received in order until the application reads it.
// It fills pages to the brim, whatever the sizes of the blocks the data came
// in, so that the heap it holds is the data plus at most one page partly
// filled at each end: a peer sending one-byte blocks costs the receiver no
// more than one sending full ones.
type readBuf struct {
	pages [][]byte // pages[0] is read from off; every page but the last is full
	off   int
	n     int // bytes held
}

const (
	firstPage = 2048 // a tunnel that holds little (a chat) holds a small page
	pageSize  = 8192
)

func (b *readBuf) len() int { return b.n }

// write appends a copy of p.
func (b *readBuf) write(p []byte) {
	b.n += len(p)
	for len(p) > 0 {
		if k := len(b.pages); k > 0 {
			last := b.pages[k-1]
			if room := cap(last) - len(last); room > 0 {
				m := min(room, len(p))
				b.pages[k-1] = append(last, p[:m]...)
				p = p[m:]
				continue
			}
		}
		size := pageSize
		if len(b.pages) == 0 && len(p) <= firstPage {
			size = firstPage
		}
		b.pages = append(b.pages, getBuf(size))
	}
}

// read copies up to len(p) bytes into p and returns how many.
func (b *readBuf) read(p []byte) int {
	n := 0
	for n < len(p) && len(b.pages) > 0 {
		pg := b.pages[0]
		k := copy(p[n:], pg[b.off:])
		n += k
		b.off += k
		if b.off == len(pg) {
			// A page is done once read to its end; the last page is also
			// the one being filled, and is kept while it has room.
			if len(b.pages) == 1 && len(pg) < cap(pg) {
				b.pages[0] = pg[:0]
				b.off = 0
				break
			}
			putBuf(pg)
			b.pages[0] = nil
			b.pages = b.pages[1:]
			b.off = 0
		}
	}
	b.n -= n
	if b.n == 0 {
		b.release()
	}
	return n
}

// release drops everything held.
func (b *readBuf) release() {
	for _, pg := range b.pages {
		putBuf(pg)
	}
	b.pages = nil
	b.off = 0
	b.n = 0
}
