package doctor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/bubbled/bubbled/config"
	"github.com/bubbled/bubbled/connectors/sms"
	"github.com/bubbled/bubbled/connectors/sms/at"
)

// Holder is a process that has a device open.
type Holder struct {
	// PID is its process ID.
	PID int
	// Name is its command name (/proc/<pid>/comm).
	Name string
}

// PortHolders lists the other processes (not this one) whose open files
// include device (its symlinks resolved), read from procRoot (/proc).
// unreadable counts the
// processes whose file table could not be read (other users' processes
// when not run as root), so a caller can say the list may be incomplete.
func PortHolders(procRoot, device string) (holders []Holder, unreadable int, err error) {
	real, err := filepath.EvalSymlinks(device)
	if err != nil {
		return nil, 0, err
	}
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		fdDir := filepath.Join(procRoot, e.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			if !os.IsNotExist(err) {
				unreadable++
			}
			continue
		}
		for _, fd := range fds {
			if target, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && target == real {
				comm, _ := os.ReadFile(filepath.Join(procRoot, e.Name(), "comm"))
				holders = append(holders, Holder{PID: pid, Name: strings.TrimSpace(string(comm))})
				break
			}
		}
	}
	return holders, unreadable, nil
}

// modemFindings checks one configured modem: the device, who else holds
// it, and what the modem says.
func modemFindings(ctx context.Context, cfg *config.Config, m config.Modem, o Options) []Finding {
	var out []Finding
	if !strings.HasPrefix(m.Device, at.TCPScheme) {
		f, ok := portFinding("modem "+m.ID, m.Device, o.ProcRoot)
		out = append(out, f)
		if !ok {
			return out
		}
	}
	return append(out, probeFindings(ctx, cfg, m, o)...)
}

// portFinding checks that the device exists and that no other process has
// it open; ok is false when that blocks talking to the modem.
func portFinding(check, device, procRoot string) (Finding, bool) {
	if _, err := os.Stat(device); err != nil {
		return Finding{Check: check, Level: Fail, Text: fmt.Sprintf("%s is not there (%v)", device, err),
			Fix: "plug the modem in and check the path with ls -l /dev/serial/by-id/ (use that stable path in network.modems[].device)"}, false
	}
	holders, unreadable, err := PortHolders(procRoot, device)
	if err != nil {
		return Finding{Check: check, Level: Warn, Text: "could not check which processes hold " + device + ": " + err.Error()}, true
	}
	for _, h := range holders {
		f := Finding{Check: check, Level: Fail, Text: fmt.Sprintf("%s is held by %s (pid %d)", device, h.Name, h.PID)}
		switch {
		case strings.EqualFold(h.Name, "ModemManager"):
			f.Fix = "ModemManager grabs modem ports: sudo systemctl disable --now ModemManager, or tag the port with ID_MM_DEVICE_IGNORE (see docker/99-bubbled-modem.rules)"
		case strings.HasPrefix(h.Name, "bubbled"):
			f.Text += ": bubbled is running"
			f.Fix = "stop bubbled before running doctor (or use the status command in the bot's room)"
		default:
			f.Fix = fmt.Sprintf("stop that process (kill %d) or give bubbled another port; two programs on one AT port garble each other", h.PID)
		}
		return f, false
	}
	f := Finding{Check: check, Level: OK, Text: device + ": no other process has it open"}
	if unreadable > 0 {
		f.Text += fmt.Sprintf(" (%d processes of other users not checked: run doctor as root to see them)", unreadable)
	}
	return f, true
}

// probeFindings opens the modem and reports SIM, network and storage.
func probeFindings(ctx context.Context, cfg *config.Config, m config.Modem, o Options) []Finding {
	check := "modem " + m.ID
	ctx, cancel := context.WithTimeout(ctx, o.ModemTimeout)
	defer cancel()
	r, err := sms.Probe(ctx, sms.Config{ID: m.ID, Device: m.Device, Baud: m.Baud, CommandTimeout: cfg.Network.SMS.CommandTimeout},
		o.Log.With(zap.String("line_id", m.ID)))
	if err != nil {
		return []Finding{{Check: check, Level: Fail, Text: err.Error(),
			Fix: "check network.modems[].device and .baud, that the user is in the dialout group, and that this is the modem's AT port"}}
	}
	st := r.Status
	out := []Finding{simFinding(check, st.SIM, m.PIN != "")}
	radio := Finding{Check: check, Level: OK, Text: fmt.Sprintf("%s %s; operator %q; %s; signal %s; SMS centre %s",
		st.Manufacturer, st.Model, st.Operator, st.Registration, signalText(st), orNone(st.SMSC))}
	switch {
	case !st.Registered && st.SIM == "READY":
		radio.Level, radio.Fix = Warn, "the modem is not on a network: check the antenna, the SIM's plan and coverage"
	case st.RSSI == 99 && st.SIM == "READY":
		radio.Level, radio.Fix = Warn, "no signal reported: check the antenna"
	case st.SMSC == "" && st.SIM == "READY":
		radio.Level, radio.Fix = Warn, "no SMS centre on the SIM: ask your carrier for its number and set it with AT+CSCA"
	}
	out = append(out, radio)
	if r.Storage != "" {
		f := Finding{Check: check, Level: OK, Text: fmt.Sprintf("message storage %s: %d of %d used", r.Storage, r.StorageUsed, r.StorageTotal)}
		if r.StorageTotal > 0 && r.StorageUsed >= r.StorageTotal {
			f.Level, f.Fix = Warn, "the storage is full and new SMS are refused until bubbled reads them at start"
		}
		out = append(out, f)
	}
	return out
}

// simFinding grades the +CPIN? state.
func simFinding(check, sim string, havePIN bool) Finding {
	f := Finding{Check: check, Level: OK, Text: "SIM " + sim}
	switch sim {
	case "READY":
	case "SIM PIN":
		f.Level = Warn
		if havePIN {
			f.Text += ": the SIM wants its PIN; bubbled enters network.modems[].pin at start"
		} else {
			f.Text += ": the SIM wants its PIN and none is configured"
			f.Fix = "set network.modems[].pin, or give the PIN when you log in (or with the pin command)"
		}
	case "SIM PUK", "SIM PUK2":
		f.Level, f.Fix = Fail, "the SIM is blocked: unblock it with its PUK in a phone (bubbled never tries PUKs)"
	case "":
		f.Level, f.Text, f.Fix = Fail, "no SIM state (the modem reports no SIM, or cannot read it)", "insert the SIM (power the modem off first) and check it sits right"
	default:
		f.Level, f.Fix = Fail, "the SIM needs "+sim+": unlock it in a phone"
	}
	return f
}

func signalText(st sms.ModemStatus) string {
	if st.RSSI == 99 || st.SignalDBm == 0 {
		return "unknown"
	}
	return fmt.Sprintf("%d dBm (%d/4 bars)", st.SignalDBm, st.SignalBars)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
