package main

import "syscall"

// childProcAttr puts bubbled in its own process group, so that the terminal's Ctrl-C reaches
// only the trial, which then stops bubbled in order; and makes the kernel send it SIGTERM when
// the trial dies without cleaning up. Linux sends the parent-death signal when the forking
// thread exits; the Go runtime keeps its threads unless a goroutine exits while locked to one.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
