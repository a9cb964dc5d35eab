package sms

import (
	"syscall"
	"time"
)

// cpuTime returns the process's user+system CPU time (all processes in
// this test binary: the simulator's goroutines are included).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
