package bridge

import "testing"

func TestLoopbackAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0:29340":   "127.0.0.1:29340",
		":29340":          "127.0.0.1:29340",
		"[::]:29340":      "[::1]:29340",
		"127.0.0.1:29340": "127.0.0.1:29340",
		"bridge:29340":    "bridge:29340",
	} {
		if got := loopbackAddr(in); got != want {
			t.Errorf("loopbackAddr(%q) = %q, want %q", in, got, want)
		}
	}
}
