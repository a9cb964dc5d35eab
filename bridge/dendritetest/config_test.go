package dendritetest

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// generatedConfig is what `generate-config -dir /DATA -server localhost` of v0.13.8 writes.
func generatedConfig(t *testing.T) []byte {
	t.Helper()
	raw, err := os.ReadFile("testdata/generated-v0.13.8.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// get walks a decoded YAML document along a dotted path.
func get(t *testing.T, doc map[string]any, path string) any {
	t.Helper()
	var cur any = doc
	for _, key := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("%s: parent of %s is %T, not a mapping", path, key, cur)
		}
		if cur, ok = m[key]; !ok {
			t.Fatalf("%s: key %s missing", path, key)
		}
	}
	return cur
}

func TestEditConfig(t *testing.T) {
	tests := []struct {
		name  string
		edits configEdits
		want  map[string]any
	}{
		{
			name: "no registrations",
			edits: configEdits{
				PrivateKey: "/srv/d/matrix_key.pem", SharedSecret: "s3cret", LogLevel: "warn",
			},
			want: map[string]any{
				"global.private_key":                    "/srv/d/matrix_key.pem",
				"global.trusted_third_party_id_servers": []any{},
				"global.disable_federation":             false,
				"global.server_name":                    "localhost",
				"federation_api.key_perspectives":       []any{},
				"client_api.registration_shared_secret": "s3cret",
				"client_api.registration_disabled":      true,
				"client_api.rate_limiting.enabled":      false,
				"client_api.rate_limiting.threshold":    5,
				"app_service_api.config_files":          []any{},
				"logging":                               []any{map[string]any{"type": "std", "level": "warn"}},
				"sync_api.database.connection_string":   "file:/DATA/dendrite_syncapi.db",
			},
		},
		{
			name: "two registrations and debug logs",
			edits: configEdits{
				PrivateKey: "/k.pem", SharedSecret: "x", LogLevel: "debug",
				Registrations: []string{"/a/registration.yaml", "/b/other.yaml"},
			},
			want: map[string]any{
				"app_service_api.config_files": []any{"/a/registration.yaml", "/b/other.yaml"},
				"logging":                      []any{map[string]any{"type": "std", "level": "debug"}},
				"global.private_key":           "/k.pem",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := editConfig(generatedConfig(t), tc.edits)
			if err != nil {
				t.Fatal(err)
			}
			var doc map[string]any
			if err := yaml.Unmarshal(out, &doc); err != nil {
				t.Fatalf("edited config does not parse: %v\n%s", err, out)
			}
			for path, want := range tc.want {
				if got := get(t, doc, path); !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %#v, want %#v", path, got, want)
				}
			}
		})
	}
}

func TestEditConfigIsIdempotent(t *testing.T) {
	edits := configEdits{PrivateKey: "/k.pem", SharedSecret: "x", LogLevel: "warn", Registrations: []string{"/r.yaml"}}
	once, err := editConfig(generatedConfig(t), edits)
	if err != nil {
		t.Fatal(err)
	}
	twice, err := editConfig(once, edits)
	if err != nil {
		t.Fatal(err)
	}
	if string(once) != string(twice) {
		t.Errorf("second edit changed the config:\n--- once\n%s\n--- twice\n%s", once, twice)
	}
}

func TestEditConfigRejectsOtherSchemas(t *testing.T) {
	tests := []struct {
		name    string
		config  string
		wantErr string
	}{
		{
			name:    "missing key",
			config:  strings.Replace(string(generatedConfig(t)), "  rate_limiting:\n", "  rate_limits:\n", 1),
			wantErr: "key client_api.rate_limiting is missing",
		},
		{
			name:    "scalar where a mapping belongs",
			config:  strings.Replace(string(generatedConfig(t)), "  report_stats:\n    enabled: false\n    endpoint: https://panopticon.matrix.org/push\n", "  report_stats: off\n", 1),
			wantErr: "global.report_stats is not a mapping",
		},
		{
			name:    "not a mapping",
			config:  "- a\n- b\n",
			wantErr: "top level is not a mapping",
		},
		{
			name:    "not YAML",
			config:  "global: [unclosed\n",
			wantErr: "parse Dendrite config",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := editConfig([]byte(tc.config), configEdits{PrivateKey: "/k", SharedSecret: "s", LogLevel: "warn"})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
