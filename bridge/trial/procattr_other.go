//go:build unix && !linux

package main

import "syscall"

// childProcAttr puts bubbled in its own process group, so that the terminal's Ctrl-C reaches
// only the trial, which then stops bubbled in order.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
