package modemsim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// maxSMSBody bounds the text of one simulated SMS posted to the control API.
const maxSMSBody = 64 << 10

// ControlHandler serves the simulated network's HTTP control API for sim (used by the
// modemsim command and the trial). It has no authentication: serve it on loopback only.
//
//	POST /sms?from=+15557654321      body = text: the phone texts the line
//	POST /status-report?mr=5&st=0    the SMSC reports on submitted part 5
//	GET  /sent                       JSON list of the messages the bridge sent
//	GET  /stored                     JSON list of the messages in the SIM's storage
//	GET  /pending                    JSON list of unacknowledged MT PDUs
func ControlHandler(sim *Sim) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /sms", func(w http.ResponseWriter, r *http.Request) {
		from := senderFromQuery(r.URL.Query().Get("from"))
		if from == "" {
			http.Error(w, "missing ?from=<sender number>, e.g. ?from=%2B15557654321 (%2B is +)", http.StatusBadRequest)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxSMSBody+1))
		if err != nil {
			http.Error(w, "read the text: "+err.Error(), http.StatusBadRequest)
			return
		}
		if len(body) > maxSMSBody {
			http.Error(w, fmt.Sprintf("the text is longer than %d bytes", maxSMSBody), http.StatusRequestEntityTooLarge)
			return
		}
		if len(body) == 0 {
			http.Error(w, "empty text: send it as the request body, e.g. curl -d 'Hello'", http.StatusBadRequest)
			return
		}
		if err := sim.Deliver(from, string(body)); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /status-report", func(w http.ResponseWriter, r *http.Request) {
		mr, errMR := strconv.Atoi(r.URL.Query().Get("mr"))
		st, errST := strconv.ParseUint(r.URL.Query().Get("st"), 0, 8)
		if errMR != nil || errST != nil {
			http.Error(w, "want ?mr=<TP-MR from /sent>&st=<TP-ST, 0 = delivered>", http.StatusBadRequest)
			return
		}
		if err := sim.DeliverStatusReport(mr, byte(st)); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /sent", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, nonNil(sim.Sent()))
	})
	mux.HandleFunc("GET /stored", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, nonNil(sim.Messages()))
	})
	mux.HandleFunc("GET /pending", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, nonNil(sim.Pending()))
	})
	return mux
}

// senderFromQuery undoes the usual mistake of an unescaped '+' in ?from=+1555…, which the
// query decodes as a space: a space followed by digits is an international number.
func senderFromQuery(from string) string {
	if rest, ok := strings.CutPrefix(from, " "); ok && rest != "" && strings.Trim(rest, "0123456789") == "" {
		return "+" + rest
	}
	return from
}

func nonNil[T any](v []T) []T {
	if v == nil {
		return []T{}
	}
	return v
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
