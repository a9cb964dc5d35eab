package bridge

import (
	"testing"

	"maunium.net/go/mautrix/event"

	"github.com/bubbled/bubbled/config"
)

// TestRoomFeaturesFollowConversationSettings: an SMS room advertises
// reactions, edits and replies exactly when network.conversation sends
// them as text, never unsending, and names the set in its ID.
func TestRoomFeaturesFollowConversationSettings(t *testing.T) {
	on := config.Conversation{Reactions: "text", ReactionRemovals: "text", Edits: "Correction: {text}", Replies: "quote"}
	off := config.Conversation{Reactions: "off", ReactionRemovals: "off", Edits: "off", Replies: "off"}
	cases := []struct {
		name                  string
		f                     *event.RoomFeatures
		reaction, edit, reply event.CapabilitySupportLevel
		delete                event.CapabilitySupportLevel
		id                    string
	}{
		{"sms, all as text", withConversation(smsFeatures(10), on), event.CapLevelPartialSupport, event.CapLevelPartialSupport, event.CapLevelPartialSupport, event.CapLevelRejected,
			"com.github.bubbled.capabilities.2026_11_25.sms.reactions.edits.replies"},
		{"sms, all off", withConversation(smsFeatures(10), off), event.CapLevelRejected, event.CapLevelRejected, event.CapLevelDropped, event.CapLevelRejected,
			"com.github.bubbled.capabilities.2026_11_25.sms"},
		{"rcs, all as text", withConversation(rcsFeatures(false), on), event.CapLevelPartialSupport, event.CapLevelPartialSupport, event.CapLevelPartialSupport, event.CapLevelFullySupported,
			"com.github.bubbled.capabilities.2026_11_25.rcs.reactions.edits.replies"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.f.Reaction != c.reaction || c.f.Edit != c.edit || c.f.Reply != c.reply || c.f.Delete != c.delete || c.f.ID != c.id {
				t.Errorf("features reaction=%v edit=%v reply=%v delete=%v id=%s, want %v %v %v %v %s",
					c.f.Reaction, c.f.Edit, c.f.Reply, c.f.Delete, c.f.ID, c.reaction, c.edit, c.reply, c.delete, c.id)
			}
		})
	}
}
