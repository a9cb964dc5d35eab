package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadRefusesToReplaceReadOnlyConfig: a config the operator made
// read-only is left byte for byte as it was, and the error says which
// secrets to set and how.
func TestLoadRefusesToReplaceReadOnlyConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		link bool // reach the file through a symlink, as with Docker secrets
	}{
		{name: "file"},
		{name: "through a symlink", link: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, minimalConfig)
			if err := os.Chmod(path, 0o444); err != nil {
				t.Fatal(err)
			}
			loadPath := path
			if tc.link {
				loadPath = filepath.Join(t.TempDir(), "config.yaml")
				if err := os.Symlink(path, loadPath); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Load(loadPath, LoadOptions{})
			if !errors.Is(err, ErrReadOnlyConfig) {
				t.Fatalf("Load of a read-only config = %v, want ErrReadOnlyConfig", err)
			}
			for _, want := range []string{"appservice.as_token", "BUBBLED_APPSERVICE__HS_TOKEN", "make the file writable", "0444"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(data) != minimalConfig {
				t.Errorf("the read-only config was changed:\n%s", data)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o444 {
				t.Errorf("mode = %#o, want it left at 0444", fi.Mode().Perm())
			}
			leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".config.yaml.tmp-*"))
			if len(leftovers) > 0 {
				t.Errorf("temporary files left behind: %v", leftovers)
			}
		})
	}
}

// TestRegistrationRefusesReadOnlyConfig: -g writes the new tokens into the
// config too, and refuses the same way (no registration with tokens the
// config does not have).
func TestRegistrationRefusesReadOnlyConfig(t *testing.T) {
	path := writeConfig(t, minimalConfig)
	cfg, err := Load(path, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o400); err != nil {
		t.Fatal(err)
	}
	regPath := filepath.Join(t.TempDir(), "registration.yaml")
	err = cfg.GenerateRegistration(regPath)
	if !errors.Is(err, ErrReadOnlyConfig) {
		t.Fatalf("GenerateRegistration with a read-only config = %v, want ErrReadOnlyConfig", err)
	}
	after, _ := os.ReadFile(path)
	if string(after) != string(before) {
		t.Error("the read-only config was changed")
	}
	if _, err := os.Stat(regPath); !os.IsNotExist(err) {
		t.Errorf("a registration was written although its tokens could not be saved: %v", err)
	}
}
