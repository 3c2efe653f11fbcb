package main

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// median is the middle value of vs (the upper one of an even count).
func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	return s[len(s)/2]
}

// percentile is the nearest-rank p-th percentile of ds (0 < p <= 100):
// the smallest sample that at least p % of the samples do not exceed.
func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(float64(len(s))*p/100+0.999999) - 1
	return s[max(0, min(rank, len(s)-1))]
}

// round formats vs for the log.
func round(vs []float64) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = fmt.Sprintf("%.2f", v)
	}
	return out
}

// repeat runs f n times and returns the median of its results.
func repeat(n int, f func() (float64, error)) (float64, []float64, error) {
	var vs []float64
	for range n {
		v, err := f()
		if err != nil {
			return 0, vs, err
		}
		vs = append(vs, v)
	}
	return median(vs), vs, nil
}

// nan marks a value that was not measured.
func nan() float64 { return math.NaN() }
