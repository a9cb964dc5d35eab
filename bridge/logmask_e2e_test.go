package bridge_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// numberPattern matches the national digits of e164 in any form a log
// line may show them: E.164, inside an ID (@sms_1555…), or formatted for
// people (+1 555-765-4321, (555) 765-4321).
func numberPattern(e164 string) *regexp.Regexp {
	digits := strings.TrimPrefix(e164, "+1")
	parts := make([]string, len(digits))
	for i, d := range digits {
		parts[i] = string(d)
	}
	return regexp.MustCompile(strings.Join(parts, `[\s\-()]*`))
}

// TestInfoLogsMaskNumbers: an SMS in, a reply out and an undecodable PDU,
// through Dendrite, modemsim and the bubbled binary. Every line bubbled
// (and mautrix inside it) logs at info or above shows the numbers only
// masked and no PDU; debug lines keep them (so the scan is not vacuous).
// The database and its WAL/SHM files are private to bubbled's user.
func TestInfoLogsMaskNumbers(t *testing.T) {
	e := newEnv(t)
	alice := e.newUser("alice")
	e.login(alice)
	ghost := ghostMXID(contactNumber)

	if err := e.sim.Deliver(contactNumber, "Hello from the phone"); err != nil {
		t.Fatal(err)
	}
	_, room := alice.waitMessage(90*time.Second, ghost, func(b string) bool { return b == "Hello from the phone" })
	if _, err := alice.cli.SendText(context.Background(), room, "Reply from Matrix"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := e.sim.WaitSent(ctx, 1); err != nil {
		t.Fatalf("the modem saw no SMS: %v; log:\n%s", err, e.tail())
	}
	// SMSC +15550000000, then an SMS-DELIVER cut inside its address.
	const badPDU = "07915155000000F0040B9151"
	if err := e.sim.DeliverPDU(badPDU); err != nil {
		t.Fatal(err)
	}
	e.waitLog("bad PDU", 90*time.Second, func(l string) bool { return strings.Contains(l, "failed to decode received PDU") })
	checkPrivateFiles(t, e.dir)
	e.stopBubbled()

	numbers := map[string]*regexp.Regexp{"line": numberPattern(lineNumber), "contact": numberPattern(contactNumber)}
	f, err := os.Open(e.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var infoLines, debugWithNumber, maskedSeen, leaks int
	for sc.Scan() {
		line := sc.Text()
		var entry struct {
			Level string `json:"level"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Level == "debug" {
			if numbers["contact"].MatchString(line) {
				debugWithNumber++
			}
			continue
		}
		infoLines++
		if strings.Contains(line, "*********21") {
			maskedSeen++
		}
		for name, re := range numbers {
			if re.MatchString(line) && leaks < 20 {
				leaks++
				t.Errorf("an info line shows the %s number in full: %s", name, line)
			}
		}
		if strings.Contains(line, badPDU) {
			t.Errorf("an info line shows the PDU: %s", line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if infoLines < 20 || debugWithNumber == 0 || maskedSeen == 0 {
		t.Fatalf("the scan looked at %d info lines, %d debug lines with the number, %d masked numbers: the log is not what this test expects",
			infoLines, debugWithNumber, maskedSeen)
	}
}

// checkPrivateFiles fails unless the SQLite database and its -wal and -shm
// files exist and only their owner can read them.
func checkPrivateFiles(t *testing.T, dir string) {
	t.Helper()
	for _, name := range []string{"bubbled.db", "bubbled.db-wal", "bubbled.db-shm"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("stat %s: %v", name, err)
			continue
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s has mode %#o; want it private to bubbled's user (0600)", name, perm)
		}
	}
}
