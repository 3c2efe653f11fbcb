package transport

import "sync"

// Payload buffers come from size-classed pools so that neither the send path
// nor the receive path makes garbage per block, and so that a small block
// does not pin a 64 KiB buffer: memory stays within a small factor of the
// bytes actually held.
var classes = [...]int{512, 2048, 8192, 32768, 65536 + 4}

var pools [len(classes)]sync.Pool

func classOf(n int) int {
	for i, c := range classes {
		if n <= c {
			return i
		}
	}
	return -1
}

// getBuf returns a buffer of length 0 and capacity at least n.
func getBuf(n int) []byte {
	i := classOf(n)
	if i < 0 {
		return make([]byte, 0, n)
	}
	if p, ok := pools[i].Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return make([]byte, 0, classes[i])
}

// putBuf returns b to its pool; b must not be used afterwards.
func putBuf(b []byte) {
	c := cap(b)
	for i, cl := range classes {
		if c == cl {
			b = b[:0]
			pools[i].Put(&b)
			return
		}
	}
}
