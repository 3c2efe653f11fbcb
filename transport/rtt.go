package transport

import "time"

// maxBackoff caps the acknowledgement timeout after repeated timeouts.
const maxBackoff = 60 * time.Second

// rttEstimator is RFC 6298's smoothed round-trip time and its variation.
type rttEstimator struct {
	srtt, rttvar time.Duration
	has          bool
	initial, min time.Duration
}

func (r *rttEstimator) init(cfg Config) {
	r.initial = cfg.AckTimeout
	r.min = cfg.MinAckTimeout
}

func (r *rttEstimator) sample(d time.Duration) {
	if d <= 0 {
		return
	}
	if !r.has {
		r.srtt, r.rttvar, r.has = d, d/2, true
		return
	}
	diff := r.srtt - d
	if diff < 0 {
		diff = -diff
	}
	r.rttvar = (3*r.rttvar + diff) / 4
	r.srtt = (7*r.srtt + d) / 8
}

// timeout is the acknowledgement timeout for the given try, doubled for each
// earlier try (Karn's backoff).
func (r *rttEstimator) timeout(try int) time.Duration {
	t := r.initial
	if r.has {
		t = max(r.min, r.srtt+4*r.rttvar)
	}
	for i := 1; i < try && t < maxBackoff; i++ {
		t *= 2
	}
	return min(t, maxBackoff)
}
