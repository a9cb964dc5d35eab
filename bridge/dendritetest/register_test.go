package dendritetest

import "testing"

func TestRegistrationMAC(t *testing.T) {
	// Expected values computed independently with Python's hmac module.
	tests := []struct {
		name                      string
		nonce, user, pass, secret string
		admin                     bool
		want                      string
	}{
		{
			name: "admin", secret: "test-shared-secret", nonce: "abc", user: "alice", pass: "pw", admin: true,
			want: "9a5d0d5a329d93110ebf607f8936c87869ac3e67",
		},
		{
			name: "not admin, non-ASCII password", secret: "test-shared-secret", nonce: "f00", user: "bob", pass: "s3cret päss",
			want: "91017e7319d410f295bd5702c7e5c8edf3ce2327",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := registrationMAC(tc.secret, tc.nonce, tc.user, tc.pass, tc.admin); got != tc.want {
				t.Errorf("mac = %s, want %s", got, tc.want)
			}
		})
	}
}
