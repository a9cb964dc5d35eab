package bridge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"go.uber.org/zap"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/networkid"

	"github.com/bubbled/bubbled/connectors/contacts"
)

// contacts.go gives ghosts the names and photos of the operator's contacts
// (network.contacts). DM portals follow their ghost's name and photo through
// bridgev2 (bridge.private_chat_portal_meta), so a rename reaches both.

// startContacts loads the stored contacts and starts syncing them; it does
// nothing when network.contacts has no source.
func (c *Connector) startContacts(ctx context.Context) error {
	ct := c.cfg.Contacts
	var sources []contacts.Source
	if ct.CardDAV.URL != "" {
		sources = append(sources, &contacts.CardDAV{URL: ct.CardDAV.URL, Username: ct.CardDAV.Username, Password: ct.CardDAV.Password})
	}
	if ct.VCardFile != "" {
		sources = append(sources, &contacts.File{Path: ct.VCardFile})
	}
	if len(sources) == 0 {
		return nil
	}
	if err := contacts.Upgrade(ctx, c.br.DB.Database); err != nil {
		return err
	}
	c.contacts = contacts.New(contacts.Options{
		Sources:  sources,
		Region:   c.cfg.DefaultRegion,
		Interval: ct.SyncInterval,
		Store:    contacts.NewDBStore(c.br.DB.Database),
		OnChange: c.applyContacts,
		Log:      c.log.Named("contacts"),
	})
	if err := c.contacts.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("start syncing contacts (network.contacts): %w", err)
	}
	return nil
}

// contactOf returns the contact of a ghost, if the contacts know its number.
func (c *Connector) contactOf(uid networkid.UserID) (contacts.Contact, bool) {
	num, ok := NumberForUserID(uid)
	if c.contacts == nil || !ok || !strings.HasPrefix(num, "+") {
		return contacts.Contact{}, false
	}
	return c.contacts.Lookup(num)
}

// userInfo is a ghost's profile: its contact's name and photo when the
// contacts know it, else its formatted number (and no photo).
func (c *Connector) userInfo(uid networkid.UserID) *bridgev2.UserInfo {
	info := userInfoFor(uid)
	if c.contacts == nil {
		return info
	}
	ct, ok := c.contactOf(uid)
	if !ok {
		info.Avatar = &bridgev2.Avatar{Remove: true}
		return info
	}
	info.Name = ptr(ct.Name)
	info.Avatar = &bridgev2.Avatar{Remove: true}
	if len(ct.Photo) > 0 {
		sum := sha256.Sum256(ct.Photo)
		photo := ct.Photo
		info.Avatar = &bridgev2.Avatar{
			ID:  networkid.AvatarID("vcard-" + hex.EncodeToString(sum[:12])),
			Get: func(context.Context) ([]byte, error) { return photo, nil },
		}
	}
	return info
}

// applyContacts updates the ghosts of changed numbers (the syncer's
// OnChange). Ghosts not made yet get the names when they are made.
func (c *Connector) applyContacts(ctx context.Context, changed []string) {
	for _, num := range changed {
		uid := UserIDForNumber(num)
		ghost, err := c.br.GetExistingGhostByID(ctx, uid)
		if err != nil {
			c.log.Warn("failed to find a ghost to rename", zap.Error(err))
			continue
		}
		if ghost != nil {
			ghost.UpdateInfo(ctx, c.userInfo(uid))
		}
	}
}
