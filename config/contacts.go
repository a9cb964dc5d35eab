package config

import (
	"strconv"
	"time"

	"github.com/bubbled/bubbled/connectors/phone"
)

// Contacts is network.contacts: where ghosts get their names and photos.
type Contacts struct {
	// CardDAV is an address book server (Nextcloud, Radicale, Baïkal);
	// off while its URL is "".
	CardDAV CardDAV `yaml:"carddav"`
	// VCardFile is a file of vCards (an export of the phone's contacts);
	// "" for none. It is read again at every sync.
	VCardFile string `yaml:"vcard_file"`
	// SyncInterval is how often the contacts are fetched again (15m).
	SyncInterval time.Duration `yaml:"sync_interval"`
}

// CardDAV is network.contacts.carddav.
type CardDAV struct {
	// URL is the server's CardDAV address or the address book's own URL,
	// e.g. https://cloud.example.org/remote.php/dav.
	URL string `yaml:"url"`
	// Username and Password are sent as HTTP basic auth (an app password).
	Username string `yaml:"username"`
	Password string `yaml:"password"`
}

// Privacy is network.privacy: what happens to SMS from strangers.
type Privacy struct {
	// UnknownSenders is room (each sender gets a room, the default),
	// quarantine (senders not in the contacts land in one "Unknown senders"
	// room per line until accepted) or drop (nothing reaches Matrix).
	UnknownSenders string `yaml:"unknown_senders"`
	// Blocked lists numbers whose SMS never reach Matrix, besides those
	// blocked with the block command.
	Blocked []string `yaml:"blocked"`
	// CodesTTL, when above 0, sends SMS from short codes and alphanumeric
	// senders (banks, one-time codes) into one "Codes" room per line where
	// they disappear this long after arriving. 0 (default) gives each such
	// sender its own room.
	CodesTTL time.Duration `yaml:"codes_ttl"`
}

// Unknown-sender policies of network.privacy.unknown_senders.
const (
	UnknownSendersRoom       = "room"
	UnknownSendersQuarantine = "quarantine"
	UnknownSendersDrop       = "drop"
)

func (c *Config) validateContacts(ch *checker, region string) {
	ct := c.Network.Contacts
	key := func(k ...string) []string { return append([]string{"network", "contacts"}, k...) }
	if u := ct.CardDAV.URL; u != "" && !isHTTPURL(u) {
		ch.add(key("carddav", "url"), q(u), "is not an http(s) URL", `write the CardDAV address of your server, e.g. https://cloud.example.org/remote.php/dav, or "" for none`)
	}
	if ct.CardDAV.URL != "" && (ct.CardDAV.Username == "") != (ct.CardDAV.Password == "") {
		ch.add(key("carddav", "username"), q(ct.CardDAV.Username), "is given without a password, or a password without it",
			`write both username and password (an app password), or neither for a server without auth`)
	}
	if ct.SyncInterval < time.Second {
		ch.add(key("sync_interval"), ct.SyncInterval.String(), "is shorter than 1s", "write e.g. 15m (the contacts are fetched that often)")
	}
	p := c.Network.Privacy
	pk := func(k string) []string { return []string{"network", "privacy", k} }
	switch p.UnknownSenders {
	case UnknownSendersRoom, UnknownSendersQuarantine, UnknownSendersDrop:
	default:
		ch.add(pk("unknown_senders"), q(p.UnknownSenders), "is not a policy", "write room, quarantine or drop")
	}
	if p.UnknownSenders != UnknownSendersRoom && ct.CardDAV.URL == "" && ct.VCardFile == "" {
		ch.add(pk("unknown_senders"), q(p.UnknownSenders), "needs contacts to tell strangers apart, but network.contacts has no source",
			"set network.contacts.carddav.url or network.contacts.vcard_file, or write room")
	}
	for i, n := range p.Blocked {
		if _, err := phone.Parse(n, region); err != nil {
			ch.add([]string{"network", "privacy", "blocked[" + strconv.Itoa(i) + "]"}, q(n), "is not a phone number",
				`write the number in international form, e.g. "+12015550123"`)
		}
	}
	if p.CodesTTL < 0 || (p.CodesTTL > 0 && p.CodesTTL < time.Minute) {
		ch.add(pk("codes_ttl"), p.CodesTTL.String(), "is not 0 or at least 1m", "write e.g. 24h, or 0s to give codes their own rooms")
	}
}
