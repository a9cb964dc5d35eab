package mms

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// bindControl returns a dialer Control that binds each socket to ifname
// with SO_BINDTODEVICE (nil for ""). Linux allows it unprivileged on an
// unbound socket since 5.7; before that it needs CAP_NET_RAW.
func bindControl(ifname string) func(network, address string, c syscall.RawConn) error {
	if ifname == "" {
		return nil
	}
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifname)
		}); err != nil {
			return err
		}
		switch {
		case serr == nil:
			return nil
		case errors.Is(serr, unix.EPERM):
			return fmt.Errorf("bind MMS connection to interface %q: %w: run bubbled on Linux 5.7 or later, or grant it CAP_NET_RAW, or leave network.mms.interface empty and route the MMSC through the modem yourself", ifname, serr)
		case errors.Is(serr, unix.ENODEV):
			return fmt.Errorf("bind MMS connection to interface %q: no such interface: bring up the modem's data link (see README, MMS) or fix network.mms.interface", ifname)
		}
		return fmt.Errorf("bind MMS connection to interface %q: %w", ifname, serr)
	}
}
