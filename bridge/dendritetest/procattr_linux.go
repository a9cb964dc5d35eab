package dendritetest

import "syscall"

// sysProcAttr makes the kernel kill Dendrite when the process that started it dies (a test
// binary killed by -timeout, a trial ended with SIGKILL), so no homeserver outlives its owner.
// Linux sends it when the forking thread exits; the Go runtime keeps its threads unless a
// goroutine exits while locked to one, so Start must not run on such a goroutine.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
