package main

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuNow reads this process's CPU time and that of process pid and its
// children (utime+stime from /proc, in clock ticks of 10 ms).
func cpuNow(pid int) cpuUse {
	var u cpuUse
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		u.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return u
	}
	// Fields after the command name, which is in parentheses: state is
	// field 3, utime 14, stime 15, cutime 16, cstime 17.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	var ticks int64
	for _, i := range []int{14, 15, 16, 17} {
		v, _ := strconv.ParseInt(f[i-3], 10, 64)
		ticks += v
	}
	u.server = time.Duration(ticks) * 10 * time.Millisecond
	u.reads, u.writes = procField(pid, "io", "syscr:"), procField(pid, "io", "syscw:")
	u.vol, u.invol = procField(pid, "status", "voluntary_ctxt_switches:"), procField(pid, "status", "nonvoluntary_ctxt_switches:")
	return u
}

// procField is the number after key in /proc/pid/file, or 0.
func procField(pid int, file, key string) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/" + file)
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}
