package transport

// seqClass is where a received seq falls relative to the next expected one.
type seqClass int

const (
	seqNext    seqClass = iota // the next expected seq: deliver
	seqAhead                   // 1..255 ahead, not seen: buffer
	seqSeen                    // already received (buffered ahead or within the last 256): acknowledge again
	seqInvalid                 // anything else: a protocol violation
)

// reorder holds the blocks that arrived ahead of a gap. Slots are indexed by
// seq modulo 256: the blocks it can hold (next+1 .. next+255) never share a
// slot. It is bounded by construction: at most SeqSpan-1 blocks, each of at
// most one block-size, all counted against the flow-control window. Each
// block is held in a buffer at most twice its size, so that many tiny
// blocks ahead of a gap cost no more than their bytes and a fixed overhead
// per slot.
type reorder struct {
	next      uint16
	slots     [256][]byte
	n         int // occupied slots
	delivered int // blocks delivered in order, counted up to lateSpan
	// late widens what counts as already received, below the next
	// expected seq, from SeqSpan to lateSpan: once a tunnel has been
	// re-attached, a copy sent through an earlier session may arrive
	// late (servers keep no order between two sessions of an account).
	late bool
}

// lateSpan is how far below the next expected seq a re-attached tunnel
// takes a block it has delivered as a duplicate: half the seq space, the
// most that stays unambiguous.
const lateSpan = 1 << 15

func (r *reorder) classify(seq uint16) seqClass {
	d := seq - r.next // modulo 65536
	switch {
	case d == 0:
		return seqNext
	case d < 256:
		if r.slots[seq&255] != nil {
			return seqSeen
		}
		return seqAhead
	case d >= 65536-256 && int(65536-uint32(d)) <= r.delivered,
		r.late && d >= 65536-lateSpan && int(65536-uint32(d)) <= r.delivered:
		// Below the next expected one, and really received: a seq a
		// fresh tunnel never had is no duplicate.
		return seqSeen
	}
	return seqInvalid
}

// put stores a copy of a block classified seqAhead.
func (r *reorder) put(seq uint16, p []byte) {
	var b []byte
	if i := classOf(len(p)); i >= 0 && classes[i] <= 2*len(p) {
		b = getBuf(len(p))
	} else {
		b = make([]byte, 0, len(p))
	}
	r.slots[seq&255] = append(b, p...)
	r.n++
}

// advance moves past the next expected seq (just delivered) and returns the
// block now at the head of the buffer, if it has arrived; call it again until
// ok is false, and free each block once copied.
func (r *reorder) advance() (b []byte, ok bool) {
	r.next++
	if r.delivered < lateSpan {
		r.delivered++
	}
	i := r.next & 255
	b = r.slots[i]
	if b == nil {
		return nil, false
	}
	r.slots[i] = nil
	r.n--
	return b, true
}

// free returns a block that advance handed out.
func (r *reorder) free(b []byte) { putBuf(b) }

// release drops every buffered block.
func (r *reorder) release() {
	if r.n == 0 {
		return
	}
	for i, b := range r.slots {
		if b != nil {
			putBuf(b)
			r.slots[i] = nil
		}
	}
	r.n = 0
}
