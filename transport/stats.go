package transport

import "sync/atomic"

// Stats counts what an Endpoint has sent, for benchmarks and diagnostics.
type Stats struct {
	// DataSent is the number of data elements sent, each counted once
	// however often it was sent.
	DataSent int64
	// Retransmits is the number of data elements sent again (after an
	// acknowledgement timeout or a wait error).
	Retransmits int64
	// IQsSent is the number of IQs sent: every element, every attempt.
	IQsSent int64
}

// stats is the Endpoint's live counters.
type stats struct {
	dataSent, retransmits, iqsSent atomic.Int64
}

// Stats returns the Endpoint's counters.
func (e *Endpoint) Stats() Stats {
	return Stats{
		DataSent:    e.stats.dataSent.Load(),
		Retransmits: e.stats.retransmits.Load(),
		IQsSent:     e.stats.iqsSent.Load(),
	}
}
