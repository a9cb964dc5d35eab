package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bubbled/bubbled/bridge/dendritetest"
	"github.com/bubbled/bubbled/bridge/metrics"
	"github.com/bubbled/bubbled/connectors/sms/at"
	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// TestDoctor runs "bubbled doctor" through run() against a real Dendrite
// and modemsim: a good setup passes and prints what an operator needs; a
// homeserver that does not know the registration, a missing modem, a port
// held by another process and a blocked SIM each make it exit non-zero and
// say what to do.
func TestDoctor(t *testing.T) {
	if os.Getenv("BUBBLED_SKIP_DENDRITE") == "1" {
		t.Skip("BUBBLED_SKIP_DENDRITE=1")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	example, err := os.ReadFile("example-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sim, err := modemsim.Start(modemsim.Options{OwnNumber: "+15550001111"})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	locked, err := modemsim.Start(modemsim.Options{PIN: "1234"})
	if err != nil {
		t.Fatal(err)
	}
	defer locked.Close()
	blockSIM(t, locked.Path())
	port, err := dendritetest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, device string) string {
		s := strings.Replace(string(example), "http://127.0.0.1:8008", "http://127.0.0.1:"+itoa(port), 1)
		if name != "good.yaml" { // the others share good.yaml's generated tokens
			b, _ := os.ReadFile(filepath.Join(dir, "good.yaml"))
			s = string(b)
			s = strings.Replace(s, "device: "+sim.Path()+"\n", "device: /dev/ttyUSB2\n", 1)
		}
		s = strings.Replace(s, "    device: /dev/ttyUSB2\n", "    device: "+device+"\n", 1)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", sim.Path())
	reg := filepath.Join(dir, "registration.yaml")
	var out bytes.Buffer
	if code := run([]string{"-c", good, "-g", "-r", reg}, &out, &out); code != exitOK {
		t.Fatalf("-g: %d %s", code, out.String())
	}
	hs, err := dendritetest.Start(ctx, dendritetest.Options{AppServiceRegistrations: []string{reg}, Port: port})
	if err != nil {
		t.Fatalf("start dendrite: %v", err)
	}
	defer hs.Close()

	// Another program with the port open, as ModemManager would have it.
	heldPort, err := os.OpenFile(sim.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	holder := exec.Command("sleep", "300")
	holder.Stdin = heldPort
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	heldPort.Close()
	stopHolder := func() { _ = holder.Process.Kill(); _ = holder.Wait() }
	defer stopHolder()
	pid := itoa(holder.Process.Pid)
	tests := []struct {
		name     string
		config   func() string
		hold     bool
		wantCode int
		want     []string
	}{
		{name: "port held by another process", config: func() string { return good }, hold: true,
			wantCode: exitDoctor, want: []string{"FAIL  modem sim1: " + sim.Path() + " is held by sleep (pid " + pid + ")", "kill " + pid}},
		{name: "all good", config: func() string { return good }, wantCode: exitOK, want: []string{
			"ok    homeserver: http://127.0.0.1:", "knows the appservice token (the bridge bot @smsbot:localhost is registered at bubbled's first start)",
			"ok    modem sim1: " + sim.Path() + ": no other process has it open", "SIM READY", `operator "Simulated"`,
			"registered", "dBm", "SMS centre +15550000000", "message storage SM: 0 of 30 used",
			"warn  homeserver: the homeserver advertises no Matrix version from v1.4", "Nothing blocks a start."}},
		{name: "unknown appservice token", config: func() string {
			p := filepath.Join(dir, "other-token.yaml")
			b, _ := os.ReadFile(good)
			s := string(b)
			i := strings.Index(s, "as_token: ")
			j := strings.IndexByte(s[i:], '\n')
			s = s[:i] + "as_token: not-the-registered-one" + s[i+j:]
			if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, wantCode: exitDoctor, want: []string{"FAIL  homeserver: the homeserver refuses bubbled's appservice token", "fix: write the registration"}},
		{name: "modem missing", config: func() string { return write("missing.yaml", filepath.Join(dir, "ttyUSB7")) },
			wantCode: exitDoctor, want: []string{"FAIL  modem sim1: " + filepath.Join(dir, "ttyUSB7") + " is not there", "/dev/serial/by-id/", "1 problem(s) block a start"}},
		{name: "SIM needs its PUK", config: func() string { return write("puk.yaml", locked.Path()) },
			wantCode: exitDoctor, want: []string{"FAIL  modem sim1: SIM SIM PUK", "unblock it with its PUK"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.hold {
				stopHolder()
			}
			var out bytes.Buffer
			code := run([]string{"doctor", "-c", tt.config()}, &out, &out)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d", code, tt.wantCode)
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("the report lacks %q", w)
				}
			}
			if t.Failed() {
				t.Logf("report:\n%s", out.String())
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// blockSIM enters three wrong PINs, as a careless person would, so the SIM
// wants its PUK.
func blockSIM(t *testing.T, device string) {
	t.Helper()
	ctx := context.Background()
	port, _, err := at.OpenPort(ctx, device, 115200)
	if err != nil {
		t.Fatal(err)
	}
	m := at.New(port, at.Options{Timeout: 5 * time.Second})
	defer m.Close()
	for range 3 {
		if _, err := m.Command(ctx, `+CPIN="0000"`, 0); err == nil {
			t.Fatal("the simulator took a wrong PIN")
		}
	}
}

// TestHealth: "bubbled health" exits 0 only while /readyz on the config's
// metrics listener says ready, and 1 when it is not or nothing listens.
func TestHealth(t *testing.T) {
	example, err := os.ReadFile("example-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	met := metrics.New()
	var ready atomic.Bool
	met.SetSources(metrics.Sources{Started: ready.Load})
	srv, err := metrics.Listen("127.0.0.1:0", met.Handler(false))
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(srv.Addr())
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	s := strings.Replace(string(example), "listen: 127.0.0.1:9466", "listen: 0.0.0.0:"+port, 1)
	if err := os.WriteFile(cfg, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		ready bool
		stop  bool
		want  int
		says  string
	}{
		{"starting", false, false, 1, "still starting"},
		{"ready", true, false, 0, `"ready":true`},
		{"nothing listens", true, true, 1, "not ready"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ready.Store(tt.ready)
			if tt.stop {
				_ = srv.Close()
			}
			var out bytes.Buffer
			if code := run([]string{"health", "-c", cfg}, &out, &out); code != tt.want || !strings.Contains(out.String(), tt.says) {
				t.Errorf("health = %d %q, want %d and %q", code, out.String(), tt.want, tt.says)
			}
		})
	}
}

// TestSystemdUnit: docker/bubbled.service keeps its hardening and passes
// systemd-analyze verify (with the binary path pointed at an existing file).
func TestSystemdUnit(t *testing.T) {
	raw, err := os.ReadFile("docker/bubbled.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(raw)
	for _, want := range []string{"\nUser=bubbled\n", "\nGroup=dialout\n", "\nStateDirectory=bubbled\n", "\nProtectSystem=strict\n",
		"\nNoNewPrivileges=yes\n", "\nProtectHome=yes\n", "\nPrivateTmp=yes\n", "\nCapabilityBoundingSet=\n", "\nReadWritePaths=/etc/bubbled\n",
		"\nExecStart=/usr/local/bin/bubbled -c /etc/bubbled/config.yaml\n"} {
		if !strings.Contains(unit, want) {
			t.Errorf("the unit lacks %q", strings.TrimSpace(want))
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed: the unit's syntax is not verified")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "bubbled.service")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(unit, "/usr/local/bin/bubbled", self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", p).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
