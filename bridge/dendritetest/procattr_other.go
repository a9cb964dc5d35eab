//go:build !linux

package dendritetest

import "syscall"

// sysProcAttr returns nil: without Linux's parent-death signal, Dendrite outlives an owner
// that dies without calling Stop.
func sysProcAttr() *syscall.SysProcAttr { return nil }
