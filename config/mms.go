package config

import (
	"net"
	"strconv"
	"strings"
)

// validateMMS checks network.mms and the modems' mms_* overrides; only
// when MMS is enabled is an MMSC required.
func (c *Config) validateMMS(ch *checker) {
	m := c.Network.MMS
	at := func(k string) []string { return []string{"network", "mms", k} }
	if m.Enabled && m.MMSC == "" {
		ch.add(at("mmsc"), q(m.MMSC), "is empty but network.mms.enabled is true",
			"copy the MMSC URL from your carrier's APN settings (e.g. http://mms.example.com/mms/wapenc), or set enabled: false")
	}
	checkMMSC(ch, at("mmsc"), m.MMSC)
	checkProxy(ch, at("proxy"), m.Proxy)
	checkInterface(ch, at("interface"), m.Interface)
	if m.MaxSize < 1024 || m.MaxSize > 10<<20 {
		ch.add(at("max_size"), strconv.Itoa(m.MaxSize), "is out of range", "write a size in bytes from 1024 to 10485760, e.g. 307200 (300 KiB, what most carriers accept)")
	}
	if m.HTTPTimeout <= 0 {
		ch.add(at("http_timeout"), m.HTTPTimeout.String(), "is not a positive duration", "write e.g. 60s")
	}
	switch {
	case m.Bearer != "" && m.Bearer != "at":
		ch.add(at("bearer"), q(m.Bearer), "is not a bearer set-up", `write "" (you bring the data link up; see README, "MMS") or "at" (bubbled sends AT+CGDCONT/AT+CGACT)`)
	case m.Bearer == "at" && m.APN == "" && !everyModemHasAPN(c.Network.Modems):
		ch.add(at("apn"), q(m.APN), "is empty but network.mms.bearer is at", "copy the APN from your carrier's APN settings (the one whose type includes mms), here or as mms_apn of each modem")
	}
	if m.BearerCID < 1 || m.BearerCID > 15 {
		ch.add(at("bearer_cid"), strconv.Itoa(m.BearerCID), "is not a context identifier", "write a cid from 1 to 15 that AT+CGDCONT=? allows and no other program uses, e.g. 1")
	}
	checkAPN(ch, at("apn"), m.APN)
	for i, md := range c.Network.Modems {
		base := "modems[" + strconv.Itoa(i) + "]"
		checkMMSC(ch, []string{"network", base, "mms_mmsc"}, md.MMSMMSC)
		checkProxy(ch, []string{"network", base, "mms_proxy"}, md.MMSProxy)
		checkInterface(ch, []string{"network", base, "mms_interface"}, md.MMSInterface)
		checkAPN(ch, []string{"network", base, "mms_apn"}, md.MMSAPN)
		if strings.ContainsAny(md.MMSUserAgent, "\r\n") {
			ch.add([]string{"network", base, "mms_user_agent"}, q(md.MMSUserAgent), "has a line break", "write the user agent on one line")
		}
	}
}

// everyModemHasAPN reports whether modems are listed and each names its
// own mms_apn (then network.mms.apn may stay empty).
func everyModemHasAPN(modems []Modem) bool {
	for _, md := range modems {
		if md.MMSAPN == "" {
			return false
		}
	}
	return len(modems) > 0
}

// checkAPN refuses what cannot go into AT+CGDCONT's quoted APN.
func checkAPN(ch *checker, key []string, v string) {
	if strings.ContainsAny(v, "\",\r\n") {
		ch.add(key, q(v), "has a quote, comma or line break", "write the APN as the carrier gives it, e.g. mms.example.com")
	}
}

func checkMMSC(ch *checker, key []string, v string) {
	if v != "" && !isHTTPURL(v) {
		ch.add(key, q(v), "is not an http(s) URL", "copy the MMSC URL from your carrier's APN settings, e.g. http://mmsc.example.com/mms")
	}
}

func checkProxy(ch *checker, key []string, v string) {
	if v == "" {
		return
	}
	host, port, err := net.SplitHostPort(strings.TrimPrefix(v, "http://"))
	if p, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || p < 1 || p > 65535 {
		ch.add(key, q(v), "is not host:port", "write the carrier's MMS proxy and port, e.g. 10.10.10.20:8080, or \"\" for none")
	}
}

func checkInterface(ch *checker, key []string, v string) {
	if v != "" && (len(v) > 15 || strings.ContainsAny(v, "/ :\t")) {
		ch.add(key, q(v), "is not a network interface name", "write the modem's data interface as `ip link` shows it, e.g. wwan0, usb0 or ppp0, or \"\" for default routing")
	}
}
