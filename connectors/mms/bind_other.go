//go:build !linux

package mms

import (
	"fmt"
	"runtime"
	"syscall"
)

// bindControl refuses interface binding where SO_BINDTODEVICE does not exist.
func bindControl(ifname string) func(network, address string, c syscall.RawConn) error {
	if ifname == "" {
		return nil
	}
	return func(string, string, syscall.RawConn) error {
		return fmt.Errorf("bind MMS connection to interface %q: not supported on %s: leave network.mms.interface empty", ifname, runtime.GOOS)
	}
}
