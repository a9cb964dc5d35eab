package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunFlagsAndConfigErrors(t *testing.T) {
	example, err := os.ReadFile("example-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		config   string // written to config.yaml when not empty
		env      map[string]string
		args     []string
		wantCode int
		wantOut  []string // substrings of stdout+stderr
	}{
		{name: "version", args: []string{"--version"}, wantCode: exitOK, wantOut: []string{"bubbled dev"}},
		{name: "unknown flag", args: []string{"--nope"}, wantCode: exitUsage, wantOut: []string{"flag provided but not defined"}},
		{name: "missing config file", args: []string{"-c", "does-not-exist.yaml"}, wantCode: exitConfig, wantOut: []string{"does-not-exist.yaml"}},
		{
			name:     "missing homeserver address",
			config:   strings.Replace(string(example), "address: http://127.0.0.1:8008", "address: \"\"", 1),
			wantCode: exitConfig, wantOut: []string{"homeserver.address"},
		},
		{
			name:     "bad env override",
			config:   string(example),
			env:      map[string]string{"BUBBLED_APPSERVICE__PORT": "not-a-port"},
			wantCode: exitConfig, wantOut: []string{"appservice.port", "BUBBLED_APPSERVICE__PORT"},
		},
		{
			name:     "generate registration",
			config:   string(example),
			args:     []string{"-g", "-r", "REG"},
			wantCode: exitOK, wantOut: []string{"Wrote"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfgPath := filepath.Join(dir, "config.yaml")
			if tt.config != "" {
				if err := os.WriteFile(cfgPath, []byte(tt.config), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			args := []string{"-c", cfgPath}
			for _, a := range tt.args {
				args = append(args, strings.ReplaceAll(a, "REG", filepath.Join(dir, "registration.yaml")))
			}
			if len(tt.args) > 0 && tt.args[0] == "-c" {
				args = []string{"-c", filepath.Join(dir, tt.args[1])}
			}
			var out bytes.Buffer
			code := run(args, &out, &out)
			if code != tt.wantCode {
				t.Fatalf("exit code %d, want %d; output:\n%s", code, tt.wantCode, out.String())
			}
			for _, want := range tt.wantOut {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output does not mention %q:\n%s", want, out.String())
				}
			}
			if tt.wantCode == exitConfig && tt.config != "" {
				after, _ := os.ReadFile(cfgPath)
				if string(after) != tt.config {
					t.Errorf("a rejected config was changed on disk")
				}
			}
			if tt.name == "generate registration" {
				reg, err := os.ReadFile(filepath.Join(dir, "registration.yaml"))
				if err != nil || !strings.Contains(string(reg), "as_token") {
					t.Errorf("registration not written: %v", err)
				}
				after, _ := os.ReadFile(cfgPath)
				if strings.Contains(string(after), "as_token: generate") {
					t.Errorf("the generated as_token was not persisted in the config")
				}
			}
		})
	}
}
