package fallback

import (
	"fmt"
	"strings"
)

// Route names one way to reach a contact. The zero value is no route.
type Route string

// The routes bubbled knows, best first.
const (
	// RouteMatrix is the contact's own Matrix account, invited into the
	// conversation's portal room: end-to-end encrypted by the sender's client.
	RouteMatrix Route = "matrix"
	// RouteRCS is an RCS chat through an RCS provider.
	RouteRCS Route = "rcs"
	// RouteSMS is a text message from the conversation's modem line.
	RouteSMS Route = "sms"
	// RouteAuto is not a route: passed to Router.Pin it removes a pin, so the
	// conversation follows the ladder again.
	RouteAuto Route = "auto"
)

// DefaultOrder is the ladder used when Options.Order is empty: Matrix, then
// RCS, then SMS. A copy is returned so callers cannot change the default.
func DefaultOrder() []Route { return []Route{RouteMatrix, RouteRCS, RouteSMS} }

// ParseRoute reads a route name as an operator or a user types it ("sms",
// "SMS", " rcs ", "auto"). Unknown names fail with an error that lists the
// valid ones.
func ParseRoute(s string) (Route, error) {
	r := Route(strings.ToLower(strings.TrimSpace(s)))
	switch r {
	case RouteMatrix, RouteRCS, RouteSMS, RouteAuto:
		return r, nil
	}
	return "", fmt.Errorf("unknown route %q: use matrix, rcs, sms or auto", s)
}

// String returns the route's name as written in config ("matrix").
func (r Route) String() string { return string(r) }

// Title returns the name a person reads in a notice ("Matrix", "RCS", "SMS").
func (r Route) Title() string {
	switch r {
	case RouteMatrix:
		return "Matrix"
	case RouteRCS:
		return "RCS"
	case RouteSMS:
		return "SMS"
	case RouteAuto:
		return "automatic"
	case "":
		return "no route"
	}
	return string(r)
}

// confirms reports whether messages on r are confirmed by the network or
// the contact (read receipt, RCS DELIVERED) and so may fall back when they
// are not. SMS is the last resort and never falls back.
func (r Route) confirms() bool { return r != RouteSMS && r != "" }
