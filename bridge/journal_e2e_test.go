package bridge_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// TestJournal checks the appservice listener from outside and across
// crashes, on Dendrite: forged transactions (no token, a wrong token, a
// huge body) are refused, store nothing and never run, not after a restart
// either; a message acknowledged to the homeserver and then lost to a
// SIGKILL (the after-txn-ack failpoint) is lost with the journal off and
// sent after the restart with it on.
func TestJournal(t *testing.T) {
	e := newEnv(t)
	alice := e.newUser("alice")
	e.login(alice)
	if err := e.sim.Deliver(contactNumber, "start"); err != nil {
		t.Fatal(err)
	}
	_, portal := alice.waitMessage(60*time.Second, ghostMXID(contactNumber), func(b string) bool { return b == "start" })
	ctx := context.Background()
	send := func(text string) {
		t.Helper()
		if _, err := alice.cli.SendText(ctx, portal, text); err != nil {
			t.Fatalf("send %q: %v", text, err)
		}
	}

	t.Run("half-sent requests are closed after the timeouts", func(t *testing.T) {
		base := slices.Clone(e.env)
		e.stopBubbled()
		e.env = append(slices.Clone(base), "BUBBLED_NETWORK__LISTENER__READ_HEADER_TIMEOUT=1s", "BUBBLED_NETWORK__LISTENER__READ_TIMEOUT=2s")
		e.startBubbled()
		e.env = base
		e.waitListening()
		var conns []net.Conn
		for i := 0; i < 50; i++ {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", e.asPort))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			partial := "PUT /_matrix/app/v1/transactions/slow HTTP/1.1\r\nHost: x\r\n"
			if i%2 == 1 { // the headers complete, the body not
				partial += "Authorization: Bearer " + e.hsToken() + "\r\nContent-Length: 1000\r\n\r\n{\"events\":["
			}
			if _, err := io.WriteString(c, partial); err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		for i, c := range conns {
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, err := io.Copy(io.Discard, c); err != nil {
				t.Fatalf("half-sent request %d still open after 30 s: %v", i, err)
			}
		}
		e.stopBubbled()
		e.startBubbled()
	})

	t.Run("forged transactions are refused and never replayed", func(t *testing.T) {
		forged := func(i int) []byte {
			evt := map[string]any{"type": "m.room.message", "event_id": fmt.Sprintf("$forged%d", i), "room_id": portal,
				"sender": alice.cli.UserID, "origin_server_ts": time.Now().UnixMilli(),
				"content": map[string]any{"msgtype": "m.text", "body": "forged message"}}
			b, _ := json.Marshal(map[string]any{"events": []any{evt}})
			return b
		}
		huge := append(forged(9)[:0:0], `{"events":[`...)
		for len(huge) < 17<<20 {
			huge = append(huge, forged(len(huge))...)
			huge = append(huge, ',')
		}
		huge = append(huge[:len(huge)-1], "]}"...)
		token := e.hsToken()
		for _, c := range []struct {
			name, auth, query string
			body              []byte
			want              int
		}{
			{"no token", "", "", forged(1), http.StatusUnauthorized},
			{"wrong bearer token", "Bearer not-the-token", "", forged(2), http.StatusForbidden},
			{"wrong query token", "", "?access_token=not-the-token", forged(3), http.StatusForbidden},
			{"huge body with the token", "Bearer " + token, "", huge, http.StatusRequestEntityTooLarge},
		} {
			if got := e.putTransaction("forged-"+strings.ReplaceAll(c.name, " ", "-")+c.query, c.auth, c.body); got != c.want {
				t.Errorf("%s: HTTP %d, want %d", c.name, got, c.want)
			}
		}
		if n := e.countRows("SELECT COUNT(*) FROM bubbled_as_txn WHERE txn_id LIKE 'forged%'"); n != 0 {
			t.Errorf("%d forged transaction IDs were stored", n)
		}
		e.stopBubbled()
		e.startBubbled()
		send("after the forgeries")
		e.waitSent(t, "after the forgeries")
		if e.sentTimes("forged message") != 0 {
			t.Fatalf("a forged message reached the modem")
		}
	})

	crashAfterAck := func(text string, extra ...string) {
		t.Helper()
		base := slices.Clone(e.env)
		e.stopBubbled()
		e.env = append(append(slices.Clone(base), extra...), "BUBBLED_FAILPOINT=after-txn-ack")
		e.startBubbled()
		send(text)
		select {
		case <-e.procDone:
			e.proc = nil
		case <-time.After(90 * time.Second):
			t.Fatalf("the failpoint did not kill bubbled; log:\n%s", e.tail())
		}
		e.env = append(slices.Clone(base), extra...)
		e.startBubbled()
		e.env = base
	}

	t.Run("journal off loses the acknowledged message", func(t *testing.T) {
		crashAfterAck("lost without the journal", "BUBBLED_JOURNAL=off")
		send("sent after the lost one")
		e.waitSent(t, "sent after the lost one")
		if n := e.sentTimes("lost without the journal"); n != 0 {
			t.Fatalf("the message acknowledged before the crash was sent %d times with the journal off: the failpoint proves nothing", n)
		}
	})

	t.Run("journal on keeps the acknowledged message", func(t *testing.T) {
		e.stopBubbled()
		e.startBubbled()
		crashAfterAck("kept by the journal")
		e.waitSent(t, "kept by the journal")
		if n := e.countRows("SELECT COUNT(*) FROM bubbled_as_queue"); n != 0 {
			t.Errorf("%d handled events are still journaled", n)
		}
	})
}

// waitListening waits until bubbled's appservice listener accepts
// connections (startBubbled may see the previous run's start line).
func (e *env) waitListening() {
	e.t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", e.asPort)); err == nil {
			_ = c.Close()
			return
		}
	}
	e.t.Fatalf("the appservice listener never came up; log:\n%s", e.tail())
}

// hsToken reads the homeserver's token from the registration.
func (e *env) hsToken() string {
	e.t.Helper()
	raw, err := os.ReadFile(e.regPath)
	if err != nil {
		e.t.Fatal(err)
	}
	var reg struct {
		HSToken string `yaml:"hs_token"`
	}
	if err := yaml.Unmarshal(raw, &reg); err != nil {
		e.t.Fatal(err)
	}
	return reg.HSToken
}

// putTransaction PUTs a transaction body with an Authorization header (or
// none) and returns the HTTP status.
func (e *env) putTransaction(txnID, auth string, body []byte) int {
	e.t.Helper()
	path, query, _ := strings.Cut(txnID, "?")
	url := fmt.Sprintf("http://127.0.0.1:%d/_matrix/app/v1/transactions/%s", e.asPort, path)
	if query != "" {
		url += "?" + query
	}
	req, _ := http.NewRequest(http.MethodPut, url, bytes.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("PUT %s: %v", path, err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// countRows runs a COUNT query on bubbled's SQLite database.
func (e *env) countRows(query string) int {
	e.t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(e.dir, "bubbled.db")+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		e.t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(query).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
	return n
}

// sentTimes is how often the modem sent text.
func (e *env) sentTimes(text string) int {
	n := 0
	for _, s := range e.sim.Sent() {
		if s.Text == text {
			n++
		}
	}
	return n
}

// waitSent waits until the modem sent text.
func (e *env) waitSent(t *testing.T, text string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for e.sentTimes(text) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%q never reached the modem; log:\n%s", text, e.tail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
