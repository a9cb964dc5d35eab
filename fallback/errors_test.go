package fallback_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/bubbled/bubbled/fallback"
)

type permanentErr struct{}

func (permanentErr) Error() string   { return "rejected" }
func (permanentErr) Permanent() bool { return true }

type timeoutErr struct{}

func (timeoutErr) Error() string { return "i/o timeout" }
func (timeoutErr) Timeout() bool { return true }

func TestClassify(t *testing.T) {
	plain := errors.New("something odd")
	tests := []struct {
		name string
		err  error
		want fallback.Class
	}{
		{"nil", nil, fallback.ClassNone},
		{"unreachable sentinel", fallback.ErrUnreachable, fallback.ClassUnreachable},
		{"unreachable wrapped", fmt.Errorf("invite @bob: %w", fallback.ErrUnreachable), fallback.ClassUnreachable},
		{"unreachable marker", fallback.Unreachable(plain), fallback.ClassUnreachable},
		{"temporary interface true (CMS 38)", fmt.Errorf("send PDU part 1/2: %w", temporaryErr{38}), fallback.ClassTemporary},
		{"temporary interface false (CMS 21)", fmt.Errorf("send PDU part 1/2: %w", temporaryErr{21}), fallback.ClassPermanent},
		{"context deadline of an attempt", fmt.Errorf("post: %w", context.DeadlineExceeded), fallback.ClassTemporary},
		{"os deadline", os.ErrDeadlineExceeded, fallback.ClassTemporary},
		{"timeout interface", fmt.Errorf("dial: %w", timeoutErr{}), fallback.ClassTemporary},
		{"context cancelled", fmt.Errorf("send: %w", context.Canceled), fallback.ClassCancelled},
		{"permanent interface", permanentErr{}, fallback.ClassPermanent},
		{"permanent marker over a temporary error", fallback.Permanent(temporaryErr{38}), fallback.ClassPermanent},
		{"temporary marker over a plain error", fallback.Temporary(plain), fallback.ClassTemporary},
		{"outermost marker wins", fallback.Temporary(fallback.Permanent(plain)), fallback.ClassTemporary},
		{"marker wrapped further", fmt.Errorf("rcs: %w", fallback.Temporary(plain)), fallback.ClassTemporary},
		{"unknown error is permanent", plain, fallback.ClassPermanent},
		{"send error carries its class", &fallback.SendError{Class: fallback.ClassTemporary, Err: plain}, fallback.ClassTemporary},
		{"joined: unreachable found", errors.Join(plain, fallback.ErrUnreachable), fallback.ClassUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fallback.Classify(tt.err); got != tt.want {
				t.Errorf("Classify(%v) = %s, want %s", tt.err, got, tt.want)
			}
		})
	}
}

func TestMarkers(t *testing.T) {
	plain := errors.New("x")
	tests := []struct {
		name string
		mark func(error) error
	}{
		{"Temporary", fallback.Temporary},
		{"Permanent", fallback.Permanent},
		{"Unreachable", fallback.Unreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.mark(nil) != nil {
				t.Error("marking nil must give nil")
			}
			err := tt.mark(plain)
			if !errors.Is(err, plain) || err.Error() != "x" {
				t.Errorf("marked error %q does not wrap the original", err)
			}
		})
	}
	if !errors.Is(fallback.Unreachable(plain), fallback.ErrUnreachable) {
		t.Error("errors.Is(Unreachable(err), ErrUnreachable) = false")
	}
	if errors.Is(fallback.Temporary(plain), fallback.ErrUnreachable) {
		t.Error("errors.Is(Temporary(err), ErrUnreachable) = true")
	}
}

func TestSendErrorText(t *testing.T) {
	tests := []struct {
		name string
		err  *fallback.SendError
		want string
	}{
		{
			name: "no route",
			err: &fallback.SendError{Class: fallback.ClassUnreachable, Err: fallback.ErrNoRoute, Skipped: []fallback.Skip{
				{Route: fallback.RouteMatrix, Reason: "is not on Matrix"},
				{Route: fallback.RouteRCS, Reason: "could not be checked by RCS", Err: errors.New("503")},
			}},
			want: "no route can reach the contact (passed over: matrix: contact is not on Matrix; rcs: contact could not be checked by RCS: 503)",
		},
		{
			name: "retried",
			err:  &fallback.SendError{Route: fallback.RouteSMS, Class: fallback.ClassTemporary, Attempts: 3, Err: temporaryErr{42}},
			want: "send by SMS (3 attempts): +CMS ERROR: 42",
		},
		{
			name: "one attempt",
			err:  &fallback.SendError{Route: fallback.RouteRCS, Class: fallback.ClassPermanent, Attempts: 1, Err: errors.New("rejected")},
			want: "send by RCS: rejected",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() =\n %q\nwant\n %q", got, tt.want)
			}
			if strings.Contains(tt.err.Error(), "+1555") {
				t.Error("error text contains a phone number")
			}
		})
	}
}

func TestParseRoute(t *testing.T) {
	tests := []struct {
		in      string
		want    fallback.Route
		wantErr bool
	}{
		{"sms", fallback.RouteSMS, false},
		{" RCS ", fallback.RouteRCS, false},
		{"Matrix", fallback.RouteMatrix, false},
		{"auto", fallback.RouteAuto, false},
		{"", "", true},
		{"mms", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := fallback.ParseRoute(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseRoute(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
