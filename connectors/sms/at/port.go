package at

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"

	"go.bug.st/serial"
)

// TCPScheme prefixes a device that is a TCP serial server (ser2net, socat).
const TCPScheme = "tcp://"

// OpenPort opens device: a serial device path (opened 8N1 at baud) or
// tcp://host:port. It also returns a description for logs: by-id symlinks
// are resolved so operators see both names, while the link itself is what
// is opened, so a replug that renames ttyUSBn is followed.
func OpenPort(ctx context.Context, device string, baud int) (io.ReadWriteCloser, string, error) {
	if addr, ok := strings.CutPrefix(device, TCPScheme); ok {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, device, fmt.Errorf("connect to serial server %s: %w (check the host, the port and that ser2net runs)", addr, err)
		}
		return c, device, nil
	}
	desc := device
	if real, err := filepath.EvalSymlinks(device); err == nil && real != device {
		desc = device + " -> " + real
	}
	p, err := serial.Open(device, &serial.Mode{BaudRate: baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if err != nil {
		return nil, desc, fmt.Errorf("open serial port %s: %w (check the device path, permissions (dialout group) and that ModemManager does not hold it)", desc, err)
	}
	return p, desc, nil
}
