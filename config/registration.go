package config

import (
	"fmt"
	"os"
	"path/filepath"
)

// GenerateRegistration writes the appservice registration for the
// homeserver to path (mode 0600, atomic replace), like mautrix's
// `-g -r registration.yaml`: it uses bridgeconfig.Config.GenerateRegistration,
// so the registration carries the bot and ghost namespaces,
// receive_ephemeral (appservice.ephemeral_events) and the MSC3202/MSC4190
// flags from the encryption section.
//
// As with mautrix, new as_token and hs_token values are generated each time
// and written into the config file (comments kept, atomic replace) before
// the registration is written; install the new registration in the
// homeserver and restart both. Tokens given through BUBBLED_APPSERVICE__AS_TOKEN
// or BUBBLED_APPSERVICE__HS_TOKEN are kept as they are and never written.
// c must come from Load (it needs Path).
func (c *Config) GenerateRegistration(path string) error {
	if c.Path == "" {
		return fmt.Errorf("generate registration: config has no file path; load it with config.Load")
	}
	asEnv := os.Getenv(envName([]string{"appservice", "as_token"}))
	hsEnv := os.Getenv(envName([]string{"appservice", "hs_token"}))
	reg := c.Config.GenerateRegistration()
	if asEnv != "" {
		reg.AppToken = asEnv
		c.AppService.ASToken = asEnv
	}
	if hsEnv != "" {
		reg.ServerToken = hsEnv
		c.AppService.HSToken = hsEnv
	}
	out, err := reg.YAML()
	if err != nil {
		return fmt.Errorf("encode registration: %w", err)
	}

	var pending []pendingSecret
	if asEnv == "" {
		pending = append(pending, pendingSecret{path: []string{"appservice", "as_token"}, value: reg.AppToken})
	}
	if hsEnv == "" {
		pending = append(pending, pendingSecret{path: []string{"appservice", "hs_token"}, value: reg.ServerToken})
	}
	if len(pending) > 0 {
		data, err := os.ReadFile(c.Path)
		if err != nil {
			return fmt.Errorf("read config file to store the new tokens: %w", err)
		}
		if err := persistSecrets(c.Path, data, pending); err != nil {
			return fmt.Errorf("store the new appservice tokens in %s: %w; make the file writable", c.Path, err)
		}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("resolve registration path %q: %w", path, err)
	}
	if err := writeFileAtomic(abs, []byte(out), 0o600); err != nil {
		return fmt.Errorf("write registration %s: %w; check that its directory exists and is writable", abs, err)
	}
	return nil
}
