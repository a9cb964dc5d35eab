package bridge

import (
	"errors"
	"testing"

	"maunium.net/go/mautrix/bridgev2/networkid"

	"github.com/bubbled/bubbled/connectors/phone"
)

// TestParseNumber keeps the bridge's cases for the number parser it uses
// (phone.Parse): what people type in start-chat, whois, pin and login.
func TestParseNumber(t *testing.T) {
	tests := []struct {
		name, in, region, want string
		wantErr                bool
	}{
		{name: "international", in: "+1 555 123 4567", region: "US", want: "+15551234567"},
		{name: "national in default region", in: "(555) 123-4567", region: "US", want: "+15551234567"},
		{name: "national UK", in: "07700 900123", region: "GB", want: "+447700900123"},
		{name: "lower-case region", in: "07700 900123", region: "gb", want: "+447700900123"},
		{name: "tel URI", in: "tel:+447700900123", region: "US", want: "+447700900123"},
		{name: "letters", in: "12ab", region: "US", wantErr: true},
		{name: "empty", in: "  ", region: "US", wantErr: true},
		{name: "too short", in: "+1 55", region: "US", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := phone.Parse(tt.in, tt.region)
			if tt.wantErr {
				if !errors.Is(err, phone.ErrBadNumber) {
					t.Fatalf("phone.Parse(%q) = %q, %v; want ErrBadNumber", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("phone.Parse(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestSenderIDs(t *testing.T) {
	tests := []struct {
		name, addr string
		want       networkid.UserID
		number     string
		replyable  bool
	}{
		{name: "E.164", addr: "+15557654321", want: "15557654321", number: "+15557654321", replyable: true},
		{name: "national", addr: "5557654321", want: "15557654321", number: "+15557654321", replyable: true},
		{name: "alphanumeric", addr: "MyBank", want: "alpha_mybank"},
		{name: "alphanumeric with spaces", addr: "Dr. Who", want: "alpha_dr__who"},
		{name: "short code answered by its digits", addr: "72404", want: "local_72404", number: "72404", replyable: true},
		{name: "symbols only", addr: "+-", want: "alpha_unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := UserIDForSender(tt.addr, "US")
			if got != tt.want {
				t.Fatalf("UserIDForSender(%q) = %q, want %q", tt.addr, got, tt.want)
			}
			if !ValidUserID(got) {
				t.Errorf("ValidUserID(%q) = false", got)
			}
			num, ok := NumberForUserID(got)
			if ok != tt.replyable || num != tt.number {
				t.Errorf("NumberForUserID(%q) = %q, %v; want %q, %v", got, num, ok, tt.number, tt.replyable)
			}
		})
	}
}

// TestMaskNumber: numbers in the bridge's logs keep the one masking rule,
// the last two digits.
func TestMaskNumber(t *testing.T) {
	if got := phone.Mask("+15557654321"); got != "+*********21" {
		t.Errorf("phone.Mask = %q", got)
	}
}
