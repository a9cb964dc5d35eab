package directory

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/bubbled/bubbled/connectors/phone"
)

// normalize parses a phone number typed by a person or sent by the network and returns its
// E.164 form ("+15551234567"). National forms are read in region. Errors wrap ErrBadNumber
// and show the input masked, because callers log them.
func normalize(raw, region string) (string, error) {
	e164, problem := phone.Explain(raw, region)
	if problem != "" {
		return "", fmt.Errorf("%q is %w (%s); write it in international form, e.g. +15551234567", phone.Mask(strings.TrimSpace(raw)), ErrBadNumber, problem)
	}
	return e164, nil
}

// validateUserID checks that s is a full Matrix user ID (@localpart:server).
func validateUserID(s string) (id.UserID, error) {
	u := id.UserID(strings.TrimSpace(s))
	if _, _, err := u.ParseAndValidateRelaxed(); err != nil {
		return "", err
	}
	return u, nil
}

// buildTable validates a number -> Matrix ID table and returns it keyed by E.164. name is the
// config path of the table ("directory.static") used in the errors, which name every bad
// entry, unmasked: the table is the operator's own config and the entry must be findable.
func buildTable(name string, in map[string]string, region string) (map[string]id.UserID, error) {
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(map[string]id.UserID, len(in))
	from := make(map[string]string, len(in)) // E.164 -> the key it came from
	var errs []error
	for _, k := range keys {
		entry := name + "[" + strconv.Quote(k) + "]"
		e164, reason := phone.Explain(k, region)
		if reason != "" {
			hint := "write the number in international form, e.g. \"+15551234567\""
			if region != "" {
				hint += ", or in the national form of region " + region
			}
			errs = append(errs, fmt.Errorf("%s: %q is %w (%s); %s", entry, k, ErrBadNumber, reason, hint))
			continue
		}
		mxid, err := validateUserID(in[k])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not a Matrix user ID (%v); write a full user ID such as \"@bob:example.org\"",
				entry, in[k], err))
			continue
		}
		if prev, dup := from[e164]; dup {
			if out[e164] != mxid {
				errs = append(errs, fmt.Errorf("%s: is the same number as %s[%q] but names %s instead of %s; keep one of the two entries",
					entry, name, prev, mxid, out[e164]))
			}
			continue
		}
		from[e164] = k
		out[e164] = mxid
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// buildLocal is buildTable for SetLocal's typed map.
func buildLocal(in map[string]id.UserID, region string) (map[string]id.UserID, error) {
	s := make(map[string]string, len(in))
	for k, v := range in {
		s[k] = string(v)
	}
	return buildTable("local", s, region)
}
