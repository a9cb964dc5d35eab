package modemsim

import "fmt"

// cmsText holds the verbose (+CMEE=2) texts of the +CMS ERROR codes:
// 0..255 are the network causes of 3GPP TS 24.011 E.2 / TS 23.040 9.2.3.22
// that modems pass through, 300..500 the ME/TA codes of 3GPP TS 27.005
// 3.2.5.
var cmsText = map[int]string{
	1:   "Unassigned (unallocated) number",
	8:   "Operator determined barring",
	10:  "Call barred",
	21:  "Short message transfer rejected",
	27:  "Destination out of service",
	28:  "Unidentified subscriber",
	29:  "Facility rejected",
	30:  "Unknown subscriber",
	38:  "Network out of order",
	41:  "Temporary failure",
	42:  "Congestion",
	47:  "Resources unavailable, unspecified",
	50:  "Requested facility not subscribed",
	69:  "Requested facility not implemented",
	81:  "Invalid short message transfer reference value",
	95:  "Invalid message, unspecified",
	96:  "Invalid mandatory information",
	97:  "Message type non-existent or not implemented",
	98:  "Message not compatible with short message protocol state",
	99:  "Information element non-existent or not implemented",
	111: "Protocol error, unspecified",
	127: "Interworking, unspecified",
	300: "ME failure",
	301: "SMS service of ME reserved",
	302: "operation not allowed",
	303: "operation not supported",
	304: "invalid PDU mode parameter",
	305: "invalid text mode parameter",
	310: "SIM not inserted",
	311: "SIM PIN required",
	312: "PH-SIM PIN required",
	313: "SIM failure",
	314: "SIM busy",
	315: "SIM wrong",
	316: "SIM PUK required",
	317: "SIM PIN2 required",
	318: "SIM PUK2 required",
	320: "memory failure",
	321: "invalid memory index",
	322: "memory full",
	330: "SMSC address unknown",
	331: "no network service",
	332: "network timeout",
	340: "no +CNMA acknowledgement expected",
	500: "unknown error",
}

// cmeText holds the verbose texts of the +CME ERROR codes of 3GPP TS 27.007
// 9.2.1 that the simulator can produce.
var cmeText = map[int]string{
	0:   "phone failure",
	3:   "operation not allowed",
	4:   "operation not supported",
	10:  "SIM not inserted",
	11:  "SIM PIN required",
	12:  "SIM PUK required",
	13:  "SIM failure",
	14:  "SIM busy",
	15:  "SIM wrong",
	16:  "incorrect password",
	17:  "SIM PIN2 required",
	18:  "SIM PUK2 required",
	20:  "memory full",
	21:  "invalid index",
	22:  "not found",
	23:  "memory failure",
	24:  "text string too long",
	25:  "invalid characters in text string",
	30:  "no network service",
	31:  "network timeout",
	50:  "incorrect parameters",
	100: "unknown",
}

const resultError = "ERROR"

// cmsLocked shapes a +CMS ERROR final result code according to +CMEE.
func (s *Sim) cmsLocked(code int) string {
	switch s.set.cmee {
	case 1:
		return fmt.Sprintf("+CMS ERROR: %d", code)
	case 2:
		if t, ok := cmsText[code]; ok {
			return "+CMS ERROR: " + t
		}
		return "+CMS ERROR: unknown error"
	default:
		return resultError
	}
}

// cmeLocked shapes a +CME ERROR final result code according to +CMEE.
func (s *Sim) cmeLocked(code int) string {
	switch s.set.cmee {
	case 1:
		return fmt.Sprintf("+CME ERROR: %d", code)
	case 2:
		if t, ok := cmeText[code]; ok {
			return "+CME ERROR: " + t
		}
		return "+CME ERROR: unknown"
	default:
		return resultError
	}
}
