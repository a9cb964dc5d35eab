package bridge_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bubbled/bubbled/bridge/dendritetest"
	"github.com/bubbled/bubbled/connectors/sms/modemsim"
)

// startPostgres runs a throwaway PostgreSQL server on 127.0.0.1 and returns
// its URI. It uses the machine's initdb and pg_ctl (Debian's postgresql
// package; .ci/run installs it). As root it runs them as the postgres user,
// since PostgreSQL refuses to run as root. Without them the test is skipped,
// except in CI, where a missing server is a failure.
func startPostgres(t *testing.T) string {
	t.Helper()
	bin := ""
	for _, dir := range []string{os.Getenv("BUBBLED_PG_BIN"), "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin"} {
		if dir != "" {
			if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
				bin = dir
				break
			}
		}
	}
	if bin == "" {
		if p, err := exec.LookPath("initdb"); err == nil {
			bin = filepath.Dir(p)
		}
	}
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("PostgreSQL (initdb, pg_ctl) is not installed; .ci/run installs Debian's postgresql package")
		}
		t.Skip("PostgreSQL is not installed (apt-get install postgresql); skipping the PostgreSQL test")
	}
	dir, err := os.MkdirTemp("", "bubbled-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	port, err := dendritetest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) {
		t.Helper()
		cmdArgs := append([]string{filepath.Join(bin, name)}, args...)
		if os.Geteuid() == 0 {
			cmdArgs = append([]string{"runuser", "-u", "postgres", "--"}, cmdArgs...)
		}
		out, err := exec.Command(cmdArgs[0], cmdArgs[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(cmdArgs, " "), err, out)
		}
	}
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", "postgres", dir).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v %s", err, out)
		}
	}
	data := filepath.Join(dir, "data")
	run("initdb", "-D", data, "-U", "bubbled", "--auth=trust", "-E", "UTF8")
	run("pg_ctl", "-D", data, "-l", filepath.Join(dir, "pg.log"), "-w", "-t", "60",
		"-o", fmt.Sprintf("-h 127.0.0.1 -p %d -k %s -F", port, dir), "start")
	t.Cleanup(func() {
		args := []string{filepath.Join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "stop"}
		if os.Geteuid() == 0 {
			args = append([]string{"runuser", "-u", "postgres", "--"}, args...)
		}
		_ = exec.Command(args[0], args[1:]...).Run()
	})
	run("createdb", "-h", "127.0.0.1", "-p", fmt.Sprint(port), "-U", "bubbled", "bubbled")
	return fmt.Sprintf("postgres://bubbled@127.0.0.1:%d/bubbled?sslmode=disable", port)
}

func TestPostgresDatabase(t *testing.T) {
	uri := startPostgres(t)
	e := newEnvWith(t, envOptions{sim: modemsim.Options{OwnNumber: lineNumber, Echo: true}, postgres: uri})
	alice := e.newUser("alice")
	e.login(alice)
	ghost := ghostMXID(contactNumber)
	if err := e.sim.Deliver(contactNumber, "stored in PostgreSQL"); err != nil {
		t.Fatal(err)
	}
	_, room := alice.waitMessage(60*time.Second, ghost, func(b string) bool { return b == "stored in PostgreSQL" })
	if _, err := alice.cli.SendText(context.Background(), room, "answer via PostgreSQL"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sent, err := e.sim.WaitSent(ctx, 1)
	if err != nil || sent[0].Text != "answer via PostgreSQL" {
		t.Fatalf("modem got %+v, %v", sent, err)
	}
	// The state survives a restart on PostgreSQL too: same portal, no duplicates.
	e.stopBubbled()
	if err := e.sim.StoreOnly(contactNumber, "while down"); err != nil {
		t.Fatal(err)
	}
	e.startBubbled()
	_, room2 := alice.waitMessage(60*time.Second, ghost, func(b string) bool { return b == "while down" })
	if room2 != room {
		t.Errorf("after restart the message went to %s, want %s", room2, room)
	}
	if n := alice.count(ghost, "stored in PostgreSQL"); n != 1 {
		t.Errorf("first message arrived %d times", n)
	}
}
