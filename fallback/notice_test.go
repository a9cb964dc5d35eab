package fallback_test

import (
	"errors"
	"testing"
	"time"

	"github.com/bubbled/bubbled/fallback"
)

func TestRouteChangeText(t *testing.T) {
	tests := []struct {
		name string
		c    fallback.RouteChange
		want string
	}{
		{
			name: "now on Matrix",
			c:    fallback.RouteChange{To: "+15551230001", Peer: bob, From: fallback.RouteSMS, Route: fallback.RouteMatrix},
			want: "+15551230001 is on Matrix as @bob:example.org — messages now go end-to-end encrypted.",
		},
		{
			name: "not on Matrix",
			c: fallback.RouteChange{To: "+15551230002", Route: fallback.RouteSMS,
				Skipped: []fallback.Skip{{Route: fallback.RouteMatrix, Reason: "is not on Matrix"}}},
			want: "+15551230002 is not on Matrix, sending as SMS.",
		},
		{
			name: "two reasons",
			c: fallback.RouteChange{To: "+15551230002", From: fallback.RouteMatrix, Route: fallback.RouteSMS, Skipped: []fallback.Skip{
				{Route: fallback.RouteMatrix, Reason: "has not joined this chat on Matrix"},
				{Route: fallback.RouteRCS, Reason: "cannot receive RCS"},
			}},
			want: "+15551230002 has not joined this chat on Matrix and cannot receive RCS, sending as SMS.",
		},
		{
			name: "three reasons, one route twice",
			c: fallback.RouteChange{To: "+1", Route: fallback.RouteSMS, Skipped: []fallback.Skip{
				{Route: fallback.RouteMatrix, Reason: "a"}, {Route: fallback.RouteMatrix, Reason: "again"},
				{Route: fallback.RouteRCS, Reason: "b"}, {Route: "x", Reason: "c"},
			}},
			want: "+1 a, b and c, sending as SMS.",
		},
		{
			name: "RCS",
			c: fallback.RouteChange{To: "+15551230002", Route: fallback.RouteRCS,
				Skipped: []fallback.Skip{{Route: fallback.RouteMatrix, Reason: "is not on Matrix"}}},
			want: "+15551230002 is not on Matrix, sending by RCS.",
		},
		{
			name: "pinned",
			c:    fallback.RouteChange{To: "+15551230001", From: fallback.RouteMatrix, Route: fallback.RouteSMS, Pinned: true},
			want: "This chat is set to SMS: messages to +15551230001 go as SMS.",
		},
		{
			name: "no reason",
			c:    fallback.RouteChange{To: "+15551230002", From: fallback.RouteRCS, Route: fallback.RouteSMS},
			want: "Messages to +15551230002 now go as SMS.",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.Text(); got != tt.want {
				t.Errorf("Text() =\n %q\nwant\n %q", got, tt.want)
			}
		})
	}
}

func TestFellBackText(t *testing.T) {
	tests := []struct {
		name string
		f    fallback.FellBack
		want string
	}{
		{
			name: "sent as SMS",
			f:    fallback.FellBack{From: fallback.RouteMatrix, To: fallback.RouteSMS, Waited: 5 * time.Minute, Receipt: &fallback.Receipt{}},
			want: "Not confirmed on Matrix within 5 minutes — sent as SMS instead.",
		},
		{
			name: "RCS to SMS, one minute",
			f:    fallback.FellBack{From: fallback.RouteRCS, To: fallback.RouteSMS, Waited: time.Minute, Receipt: &fallback.Receipt{}},
			want: "Not confirmed by RCS within 1 minute — sent as SMS instead.",
		},
		{
			name: "Matrix to RCS, seconds",
			f:    fallback.FellBack{From: fallback.RouteMatrix, To: fallback.RouteRCS, Waited: 90 * time.Second, Receipt: &fallback.Receipt{}},
			want: "Not confirmed on Matrix within 90 seconds — sent by RCS instead.",
		},
		{
			name: "SMS failed",
			f:    fallback.FellBack{From: fallback.RouteMatrix, To: fallback.RouteSMS, Waited: 2 * time.Hour, Err: errors.New("+CMS ERROR: 21")},
			want: "Not confirmed on Matrix within 2 hours, and sending it as SMS failed too: +CMS ERROR: 21",
		},
		{
			name: "nothing left",
			f: fallback.FellBack{From: fallback.RouteMatrix, Waited: 5 * time.Minute, Err: fallback.ErrNoRoute,
				Skipped: []fallback.Skip{{Route: fallback.RouteRCS, Reason: "cannot receive RCS"}}},
			want: "Not confirmed on Matrix within 5 minutes, and no other route could take it: the contact cannot receive RCS.",
		},
		{
			name: "nothing left, no reason",
			f:    fallback.FellBack{From: fallback.RouteMatrix, Waited: 1500 * time.Millisecond, Err: fallback.ErrNoRoute},
			want: "Not confirmed on Matrix within 2s, and no other route could take it.",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.Text(); got != tt.want {
				t.Errorf("Text() =\n %q\nwant\n %q", got, tt.want)
			}
		})
	}
}
