package api

import (
	"encoding/json"
	"os"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzAlertmanager feeds webhook bodies to the decoder and FormatAlert: no
// panic, and the text stays within alertSMSMax characters.
func FuzzAlertmanager(f *testing.F) {
	for _, name := range []string{"alertmanager_firing.json", "alertmanager_resolved.json"} {
		raw, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte(`{"status":"firing","alerts":[{"labels":{"alertname":"` + string(rune(0x1F525)) + `"}}],"truncatedAlerts":-5}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var p AlertmanagerPayload
		if json.Unmarshal(raw, &p) != nil {
			return
		}
		text := FormatAlert(&p)
		if n := utf8.RuneCountInString(text); n > alertSMSMax {
			t.Fatalf("%d characters, want at most %d", n, alertSMSMax)
		}
	})
}

// FuzzVerifySignature: any header and body are refused or verified
// without a panic, and a signature made by Sign always verifies.
func FuzzVerifySignature(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	f.Add("k", "t=1800000000,v1=00", []byte("{}"))
	f.Add("k", Sign("k", now, []byte("{}")), []byte("{}"))
	f.Fuzz(func(t *testing.T, secret, header string, body []byte) {
		_ = VerifySignature(secret, header, body, now, time.Minute)
		if err := VerifySignature(secret, Sign(secret, now, body), body, now, time.Minute); err != nil {
			t.Fatalf("own signature refused: %v", err)
		}
	})
}
