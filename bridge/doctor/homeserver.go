package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/bubbled/bubbled/config"
)

// homeserverFindings checks that the homeserver answers, which Matrix
// versions it speaks, and that it accepts bubbled's appservice token.
func homeserverFindings(ctx context.Context, cfg *config.Config, hc *http.Client) []Finding {
	const check = "homeserver"
	addr := cfg.Homeserver.Address
	var versions struct {
		Versions []string `json:"versions"`
	}
	status, body, err := getJSON(ctx, hc, trimURL(addr, "/_matrix/client/versions"), "", &versions)
	if err != nil || status != http.StatusOK {
		return []Finding{{Check: check, Level: Fail, Text: fmt.Sprintf("%s does not answer GET /_matrix/client/versions: %s", addr, describe(status, body, err)),
			Fix: "start the homeserver, or correct homeserver.address (the client-server URL bubbled uses)"}}
	}
	out := []Finding{{Check: check, Level: OK, Text: fmt.Sprintf("%s answers (Matrix %s)", addr, newest(versions.Versions))}}
	if !slices.ContainsFunc(versions.Versions, atLeastV14) {
		out = append(out, Finding{Check: check, Level: Warn, Text: "the homeserver advertises no Matrix version from v1.4 on (Dendrite does this)",
			Fix: "start bubbled with --ignore-unsupported-server"})
	}
	return append(out, tokenFinding(ctx, cfg, hc))
}

// tokenFinding asks whoami as the bridge bot with the appservice token.
func tokenFinding(ctx context.Context, cfg *config.Config, hc *http.Client) Finding {
	const check = "homeserver"
	token := cfg.AppService.ASToken
	if token == "" || token == "generate" {
		return Finding{Check: check, Level: Fail, Text: "appservice.as_token is not generated yet",
			Fix: "run bubbled -c <config> -g -r registration.yaml and add the registration to the homeserver"}
	}
	bot := fmt.Sprintf("@%s:%s", cfg.AppService.Bot.Username, cfg.Homeserver.Domain)
	var who struct {
		UserID string `json:"user_id"`
	}
	u := trimURL(cfg.Homeserver.Address, "/_matrix/client/v3/account/whoami?user_id="+url.QueryEscape(bot))
	status, body, err := getJSON(ctx, hc, u, token, &who)
	switch {
	case err != nil:
		return Finding{Check: check, Level: Fail, Text: "could not ask whoami: " + err.Error(), Fix: "check that the homeserver stays up"}
	case status == http.StatusUnauthorized:
		return Finding{Check: check, Level: Fail, Text: "the homeserver refuses bubbled's appservice token (" + describe(status, body, nil) + ")",
			Fix: "write the registration with bubbled -g -r registration.yaml, add it to the homeserver's appservice config files and restart the homeserver"}
	case status == http.StatusForbidden && strings.Contains(body, "has not registered this user"):
		// Dendrite knows the token but the bot account is made only at
		// bubbled's first start.
		return Finding{Check: check, Level: OK, Text: "knows the appservice token (the bridge bot " + bot + " is registered at bubbled's first start)"}
	case status == http.StatusForbidden:
		return Finding{Check: check, Level: Fail, Text: "the homeserver does not let the appservice act as " + bot + " (" + describe(status, body, nil) + ")",
			Fix: "appservice.bot.username and homeserver.domain must match the registration's sender_localpart and the homeserver's server name; write the registration again with -g"}
	case status != http.StatusOK:
		return Finding{Check: check, Level: Fail, Text: "whoami as the bridge bot failed: " + describe(status, body, nil),
			Fix: "check homeserver.domain and appservice.bot.username against the registration"}
	}
	return Finding{Check: check, Level: OK, Text: "accepts the appservice token (bridge bot " + who.UserID + ")"}
}

// getJSON GETs u (with a bearer token unless it is "") and decodes a 200
// body into v; it returns the status and a short body for errors.
func getJSON(ctx context.Context, hc *http.Client, u, token string, v any) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, v); err != nil {
			return resp.StatusCode, "", fmt.Errorf("the answer is not Matrix JSON: %w", err)
		}
	}
	return resp.StatusCode, strings.TrimSpace(string(raw)), nil
}

// describe words a failed request.
func describe(status int, body string, err error) string {
	if err != nil {
		return err.Error()
	}
	if len(body) > 200 {
		body = body[:200] + "…"
	}
	return fmt.Sprintf("HTTP %d %s", status, body)
}

// newest returns the last advertised version, or "version unknown".
func newest(vs []string) string {
	if len(vs) == 0 {
		return "version unknown"
	}
	return vs[len(vs)-1]
}

// atLeastV14 reports whether a spec version such as "v1.11" is v1.4 or later.
func atLeastV14(v string) bool {
	var major, minor int
	if _, err := fmt.Sscanf(v, "v%d.%d", &major, &minor); err != nil {
		return false
	}
	return major > 1 || major == 1 && minor >= 4
}
