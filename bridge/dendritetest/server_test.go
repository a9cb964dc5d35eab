package dendritetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// writeRegistration writes an appservice registration whose bot is @<bot>:<server> and whose
// exclusive user namespace is @<bot>_*:<server>.
func writeRegistration(t *testing.T, dir, asToken, bot, server string) string {
	t.Helper()
	path := filepath.Join(dir, "registration-"+bot+".yaml")
	reg := fmt.Sprintf(`id: %s
url: http://127.0.0.1:9
as_token: %s
hs_token: hs_%s
sender_localpart: %s
rate_limited: false
namespaces:
  users:
    - exclusive: true
      regex: '@%s_.*:%s'
  aliases: []
  rooms: []
`, bot, asToken, asToken, bot, bot, strings.ReplaceAll(server, ".", `\.`))
	if err := os.WriteFile(path, []byte(reg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// whoami asks the server who token belongs to.
func whoami(ctx context.Context, s *Server, token string) (id.UserID, error) {
	cli, err := mautrix.NewClient(s.URL, "", token)
	if err != nil {
		return "", err
	}
	resp, err := cli.Whoami(ctx)
	if err != nil {
		return "", err
	}
	return resp.UserID, nil
}

// evacuateUser calls a Dendrite admin endpoint that only server admins may use.
func evacuateUser(ctx context.Context, cli *mautrix.Client) error {
	_, err := cli.MakeRequest(ctx, http.MethodPost,
		cli.BuildURL(mautrix.BaseURLPath{"_dendrite", "admin", "evacuateUser", cli.UserID}), struct{}{}, nil)
	return err
}

func TestServerUsersSurviveRestart(t *testing.T) {
	ctx := testContext(t)
	s := StartT(t, Options{})
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
		t.Fatalf("URL = %q, want http://127.0.0.1:<port>", s.URL)
	}
	resp, err := http.Get(s.URL + "/_matrix/client/versions")
	if err != nil {
		t.Fatal(err)
	}
	var versions struct {
		Versions []string `json:"versions"`
	}
	err = json.NewDecoder(resp.Body).Decode(&versions)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET versions: status %d, decode error %v", resp.StatusCode, err)
	}
	if !strings.Contains(strings.Join(versions.Versions, " "), "v1.2") {
		t.Errorf("versions = %v, want v1.2 among them", versions.Versions)
	}

	type account struct {
		name, password string
		admin          bool
	}
	accounts := []account{{"alice", "alice-password", false}, {"root", "root-password", true}}
	clients := map[string]*mautrix.Client{}
	for _, a := range accounts {
		cli, err := s.RegisterUser(ctx, a.name, a.password, a.admin)
		if err != nil {
			t.Fatalf("register %s: %v", a.name, err)
		}
		want := id.NewUserID(a.name, "localhost")
		if cli.UserID != want || cli.AccessToken == "" || cli.DeviceID == "" {
			t.Fatalf("register %s: client has user %q token set %v device %q, want user %q and both set",
				a.name, cli.UserID, cli.AccessToken != "", cli.DeviceID, want)
		}
		clients[a.name] = cli
	}

	registerErrors := []struct {
		name, user string
		want       mautrix.RespError
	}{
		{name: "taken name", user: "alice", want: mautrix.MUserInUse},
		{name: "invalid name", user: "Not Valid", want: mautrix.MInvalidUsername},
	}
	for _, tc := range registerErrors {
		t.Run("register "+tc.name, func(t *testing.T) {
			_, err := s.RegisterUser(ctx, tc.user, "long-enough", false)
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %s", err, tc.want.ErrCode)
			}
		})
	}

	checkAccounts := func(t *testing.T) {
		for _, a := range accounts {
			got, err := whoami(ctx, s, clients[a.name].AccessToken)
			if err != nil || got != clients[a.name].UserID {
				t.Errorf("whoami %s: %q, %v", a.name, got, err)
			}
			err = evacuateUser(ctx, clients[a.name])
			if a.admin && err != nil {
				t.Errorf("admin endpoint as admin %s: %v", a.name, err)
			}
			if !a.admin && !errors.Is(err, mautrix.MForbidden) {
				t.Errorf("admin endpoint as non-admin %s: err = %v, want M_FORBIDDEN", a.name, err)
			}
		}
	}
	t.Run("before restart", checkAccounts)

	url := s.URL
	start := time.Now()
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("restarted Dendrite in %s", time.Since(start))
	if s.URL != url {
		t.Fatalf("URL changed over restart: %s -> %s", url, s.URL)
	}
	t.Run("after restart", checkAccounts)

	loginCases := []struct {
		name, user, password string
		wantErr              error
	}{
		{name: "right password", user: "alice", password: "alice-password"},
		{name: "wrong password", user: "alice", password: "not-alice-password", wantErr: mautrix.MForbidden},
		{name: "unknown user", user: "nobody", password: "long-enough", wantErr: mautrix.MForbidden},
	}
	for _, tc := range loginCases {
		t.Run("login "+tc.name, func(t *testing.T) {
			cli, err := s.Login(ctx, tc.user, tc.password)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cli.UserID != id.NewUserID(tc.user, "localhost") || cli.DeviceID == "" {
				t.Errorf("logged in as %q device %q", cli.UserID, cli.DeviceID)
			}
		})
	}
}

func TestServerAppServiceRegistrations(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	const server = "bubbled.test"
	first := writeRegistration(t, dir, "as_first_0123456789", "firstbot", server)
	second := writeRegistration(t, dir, "as_second_0123456789", "secondbot", server)

	s := StartT(t, Options{ServerName: server, AppServiceRegistrations: []string{first}})
	if s.ServerName != server {
		t.Errorf("ServerName = %q, want %q", s.ServerName, server)
	}
	// An as_token authenticates as the bot only once Dendrite has loaded the registration.
	// Dendrite keeps the bot's device (whose token is the as_token) in its database, so whoami
	// keeps working after the registration is removed; asRegister shows the removal instead.
	whoamiAS := func(t *testing.T, token string, want id.UserID) {
		t.Helper()
		got, err := whoami(ctx, s, token)
		switch {
		case want == "" && !errors.Is(err, mautrix.MUnknownToken):
			t.Errorf("whoami with an unregistered as_token: %q, %v; want M_UNKNOWN_TOKEN", got, err)
		case want != "" && (err != nil || got != want):
			t.Errorf("whoami = %q, %v; want %q", got, err, want)
		}
	}
	// asRegister registers a user in an appservice's namespace with its as_token, which only
	// works while Dendrite has the registration loaded.
	asRegister := func(t *testing.T, token, user string, want error) {
		t.Helper()
		cli, err := mautrix.NewClient(s.URL, "", token)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = cli.Register(ctx, &mautrix.ReqRegister[any]{Username: user, Type: mautrix.AuthTypeAppservice, InhibitLogin: true})
		if (want == nil && err != nil) || (want != nil && !errors.Is(err, want)) {
			t.Errorf("appservice registration of %s: err = %v, want %v", user, err, want)
		}
	}
	whoamiAS(t, "as_first_0123456789", "@firstbot:bubbled.test")
	whoamiAS(t, "as_second_0123456789", "")
	asRegister(t, "as_first_0123456789", "firstbot_1", nil)

	if err := s.SetRegistrations([]string{second}); err != nil {
		t.Fatal(err)
	}
	whoamiAS(t, "as_second_0123456789", "") // not before the restart
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	whoamiAS(t, "as_second_0123456789", "@secondbot:bubbled.test")
	asRegister(t, "as_second_0123456789", "secondbot_1", nil)
	asRegister(t, "as_first_0123456789", "firstbot_2", mautrix.MUnknownToken)
}

func TestStartFailsOnBadRegistration(t *testing.T) {
	binDir := EnsureT(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("id: x\nurl: http://127.0.0.1:9\nnamespaces: [oops\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.yaml")
	tests := []struct {
		name    string
		reg     string
		wantErr string // besides "before answering"
	}{
		{name: "not YAML", reg: bad, wantErr: "Invalid config file: yaml: line 3"},
		{name: "missing file", reg: missing, wantErr: missing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Start(testContext(t), Options{BinDir: binDir, Dir: t.TempDir(), AppServiceRegistrations: []string{tc.reg}})
			if err == nil {
				s.Stop()
				t.Fatal("Start succeeded with a bad registration")
			}
			if !strings.Contains(err.Error(), "before answering") || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v; want it to say Dendrite failed to start and quote the log with %q", err, tc.wantErr)
			}
		})
	}
}

func TestErrReportsCrash(t *testing.T) {
	ctx := testContext(t)
	s := StartT(t, Options{})
	if err := s.Err(); err != nil {
		t.Fatalf("Err while running: %v", err)
	}
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
	for _, when := range []string{"before Stop", "after Stop", "after a second Stop"} {
		if err := s.Err(); err == nil || !strings.Contains(err.Error(), "exited on its own (signal: killed)") {
			t.Errorf("Err %s: %v, want it to report the crash", when, err)
		}
		s.Stop()
	}
	// A crashed server starts again, with its data.
	if _, err := s.RegisterUser(ctx, "bob", "bob-password", false); err == nil {
		t.Fatal("RegisterUser succeeded on a dead server")
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Err(); err != nil {
		t.Errorf("Err after Restart: %v", err)
	}
	if _, err := s.RegisterUser(ctx, "bob", "bob-password", false); err != nil {
		t.Error(err)
	}
}

func TestStartPorts(t *testing.T) {
	binDir := EnsureT(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port
	chosen, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		port      int   // Options.Port
		freePorts []int // what freePort hands out first, then FreePort
		wantErr   error
		wantURL   string // "" = any port but takenPort
		wantCalls int    // freePort calls
	}{
		{name: "free port", wantCalls: 1},
		{name: "free port taken before Dendrite binds it", freePorts: []int{takenPort}, wantCalls: 2},
		{name: "chosen port", port: chosen, wantURL: fmt.Sprintf("http://127.0.0.1:%d", chosen)},
		{name: "chosen port taken", port: takenPort, wantErr: errAddrInUse},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			freePort = func() (int, error) {
				calls++
				if calls <= len(tc.freePorts) {
					return tc.freePorts[calls-1], nil
				}
				return FreePort()
			}
			t.Cleanup(func() { freePort = FreePort })

			s, err := Start(testContext(t), Options{BinDir: binDir, Port: tc.port})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("err = %v, want %v", err, tc.wantErr)
				}
				if err == nil {
					s.Close()
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if calls != tc.wantCalls {
				t.Errorf("Start asked for %d free ports, want %d", calls, tc.wantCalls)
			}
			if tc.wantURL != "" && s.URL != tc.wantURL || s.URL == fmt.Sprintf("http://127.0.0.1:%d", takenPort) {
				t.Errorf("URL = %s, want %q (never port %d, which is taken)", s.URL, tc.wantURL, takenPort)
			}
			if _, err := s.RegisterUser(testContext(t), "carol", "carol-password", false); err != nil {
				t.Error(err)
			}

			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(s.Dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("folder %s still there after Close (stat err %v)", s.Dir, err)
			}
			if _, err := http.Get(s.URL + "/_matrix/client/versions"); err == nil {
				t.Errorf("Dendrite still answers at %s after Close", s.URL)
			}
		})
	}
}

func TestRestartFailsWhilePortTaken(t *testing.T) {
	s := StartT(t, Options{})
	s.Stop()
	l, err := net.Listen("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	err = s.Restart(testContext(t))
	l.Close()
	if !errors.Is(err, errAddrInUse) {
		t.Fatalf("Restart with the port taken: err = %v, want address in use", err)
	}
	if err := s.Restart(testContext(t)); err != nil {
		t.Fatalf("Restart once the port is free: %v", err)
	}
}

func TestFreePort(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("port %d from FreePort is not free: %v", port, err)
	}
	l.Close()
}
