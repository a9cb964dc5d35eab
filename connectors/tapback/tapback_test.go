package tapback

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestParseRealWordings reads the texts phones really send (sources in the
// README); each must be read as the reaction it is, quoting "see you at 7".
func TestParseRealWordings(t *testing.T) {
	const msg = "see you at 7"
	cases := []struct {
		name, text, emoji string
		removal           bool
	}{
		// iPhone, English (IMClassicTapback action strings).
		{"ios liked", "Liked “see you at 7”", Like, false},
		{"ios loved", "Loved “see you at 7”", Love, false},
		{"ios laughed", "Laughed at “see you at 7”", Laugh, false},
		{"ios emphasized", "Emphasized “see you at 7”", Emphasize, false},
		{"ios questioned", "Questioned “see you at 7”", Question, false},
		{"ios disliked", "Disliked “see you at 7”", Dislike, false},
		{"ios removed like", "Removed a like from “see you at 7”", Like, true},
		{"ios removed heart", "Removed a heart from “see you at 7”", Love, true},
		{"ios removed laugh", "Removed a laugh from “see you at 7”", Laugh, true},
		{"ios removed exclamation", "Removed an exclamation from “see you at 7”", Emphasize, true},
		{"ios removed question mark", "Removed a question mark from “see you at 7”", Question, true},
		{"ios removed dislike", "Removed a dislike from “see you at 7”", Dislike, true},
		{"ios straight quotes", `Liked "see you at 7"`, Like, false},
		{"ios other case", "LOVED “SEE YOU AT 7”", Love, false},
		// iPhone iOS 18 emoji reactions, and Google Messages' English fallback.
		{"ios18 emoji", "Reacted 🎉 to “see you at 7”", "🎉", false},
		{"ios18 emoji removed", "Removed a 🎉 from “see you at 7”", "🎉", true},
		{"ios18 tapback emoji", "Reacted 😂 to “see you at 7”", Laugh, false},
		{"ios18 skin tone", "Reacted 👍🏽 to “see you at 7”", Like, false},
		{"gmessages with", `Reacted with ❤️ to "see you at 7"`, Love, false},
		{"gmessages removed", `Removed 😂 from "see you at 7"`, Laugh, true},
		// French (iPhone and Android in the field).
		{"fr aime", "A aimé « see you at 7 »", Like, false},
		{"fr adore", "A adoré « see you at 7 »", Love, false},
		{"fr pas aime", "N’a pas aimé « see you at 7 »", Dislike, false},
		{"fr ri", "A ri de « see you at 7 »", Laugh, false},
		{"fr souligne", "A souligné « see you at 7 »", Emphasize, false},
		{"fr mention adore", "a attribué la mention « Adore » à « see you at 7 »", Love, false},
		{"fr mention jaime", "A attribué la mention « J’aime » à « see you at 7 »", Like, false},
		{"fr mention je n'aime pas", "a attribué la mention « Je n’aime pas » à « see you at 7 »", Dislike, false},
		{"fr mention emoji", "a attribué la mention « 😂 » à « see you at 7 »", Laugh, false},
		{"fr reagi avec", "a réagi avec 🔥 à « see you at 7 »", "🔥", false},
		{"fr reagi", "A réagi ❤️ à « see you at 7 »", Love, false},
		{"fr retire mention", "A retiré la mention « Adore » de « see you at 7 »", Love, true},
		{"fr retire reaction", "A retiré la réaction 😂 à « see you at 7 »", Laugh, true},
		// Spanish (iPhone).
		{"es gusto", "Le gustó “see you at 7”", Like, false},
		{"es encanto", "Le encantó “see you at 7”", Love, false},
		{"es risa", "Le dio risa “see you at 7”", Laugh, false},
		{"es exclamo", "Exclamó por “see you at 7”", Emphasize, false},
		{"es dudo", "Dudó sobre “see you at 7”", Question, false},
		{"es no gusto", "No le gustó “see you at 7”", Dislike, false},
		{"es reacciono", "Reaccionó con 🎉 a “see you at 7”", "🎉", false},
		// German (Google Messages puts the verb last; iPhone wordings).
		{"de gmessages herz", "Hat mit einem Herz auf ‚see you at 7‘ reagiert.", Love, false},
		{"de gmessages emoji", "Hat mit 😮 auf „see you at 7“ reagiert", "😮", false},
		{"de gefaellt", "Gefällt „see you at 7“", Like, false},
		{"de gefaellt nicht", "Gefällt „see you at 7“ nicht", Dislike, false},
		{"de geliebt", "Hat „see you at 7“ geliebt", Love, false},
		{"de gelacht", "Hat über „see you at 7“ gelacht", Laugh, false},
		{"de hervorgehoben", "Hat „see you at 7“ hervorgehoben", Emphasize, false},
		{"de infrage", "Hat „see you at 7“ infrage gestellt", Question, false},
		{"de entfernt", "Hat ein Herz von „see you at 7“ entfernt", Love, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, i, ok := Match(c.text, []string{"something else", msg})
			if !ok {
				t.Fatalf("Match(%q) found no reaction; readings: %+v", c.text, Parse(c.text))
			}
			if i != 1 || r.Emoji != c.emoji || r.Removal != c.removal {
				t.Errorf("Match(%q) = %+v at %d, want %s removal=%v at 1", c.text, r, i, c.emoji, c.removal)
			}
		})
	}
}

// TestQuoteMatching: the quote is checked against the conversation's
// last messages, cut short or not, with curly or straight marks, any case.
func TestQuoteMatching(t *testing.T) {
	recent := []string{"Don't forget the keys", "Are we still on for dinner at the Italian place tonight?", "ok"}
	cases := []struct {
		name, text string
		want       int // index in recent, -1 for no reaction
	}{
		{"exact", "Loved “ok”", 2},
		{"curly apostrophe", "Liked “Don’t forget the keys”", 0},
		{"cut with ellipsis", "Loved “Are we still on for dinner at the…”", 1},
		{"cut with three dots", `Liked "Are we still on for dinner..."`, 1},
		{"cut with no closing mark", "Laughed at “Are we still on for din", 1},
		{"case and spaces", "liked “are  we still on for dinner at the italian place tonight?”", 1},
		{"quotes nothing in the room", "Loved “something nobody wrote”", -1},
		{"prefix not marked as cut", "Loved “Are we still on”", -1},
		{"plain message", "see you at 7", -1},
		{"message quoting a film", "He said “ok” and then left, can you believe that he actually did that?!", -1},
		{"keyword-free wording", "Look at “ok”", -1},
		{"only a quote", "“ok”", -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, i, ok := Match(c.text, recent)
			if !ok {
				i = -1
			}
			if i != c.want {
				t.Errorf("Match(%q) index %d, want %d; readings %+v", c.text, i, c.want, Parse(c.text))
			}
		})
	}
}

func TestFormat(t *testing.T) {
	long := strings.Repeat("word ", 30)
	cases := []struct {
		name, emoji, text, want string
		removal                 bool
	}{
		{"like", "👍", "see you at 7", "Liked “see you at 7”", false},
		{"like with selector", "👍️", "see you", "Liked “see you”", false},
		{"skin tone", "👍🏾", "see you", "Liked “see you”", false},
		{"love", "❤️", "hi", "Loved “hi”", false},
		{"bare heart", "❤", "hi", "Loved “hi”", false},
		{"laugh", "😂", "hi", "Laughed at “hi”", false},
		{"emphasize", "‼️", "hi", "Emphasized “hi”", false},
		{"question", "❓", "hi", "Questioned “hi”", false},
		{"dislike", "👎", "hi", "Disliked “hi”", false},
		{"other emoji", "🎉", "hi", "Reacted 🎉 to “hi”", false},
		{"multi-line", "👍", "one\ntwo", "Liked “one two”", false},
		{"remove like", "👍", "hi", "Removed a like from “hi”", true},
		{"remove heart", "❤️", "hi", "Removed a heart from “hi”", true},
		{"remove exclamation", "‼️", "hi", "Removed an exclamation from “hi”", true},
		{"remove question", "❓", "hi", "Removed a question mark from “hi”", true},
		{"remove other", "🎉", "hi", "Removed a 🎉 from “hi”", true},
		{"long", "👍", long, "Liked “" + strings.TrimSpace(long[:60]) + "…”", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Format(c.emoji, c.text, 0)
			if c.removal {
				got = FormatRemoval(c.emoji, c.text, 0)
			}
			if got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

// FuzzParse: Parse never panics, every reading has a quote, and what
// Format writes reads back as the same reaction on the same message.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"see you at 7", "Are we “still” on?", "«ok»", "a", "", "…", "Don’t", "„x“ 'y'", "👍🏽 🎉"} {
		f.Add(s, "👍", false)
		f.Add(s, "🎉", true)
	}
	f.Add("Liked “x”", "❤️", false)
	f.Add("a attribué la mention « Adore » à « ok »", "😂", true)
	f.Fuzz(func(t *testing.T, text, emoji string, removal bool) {
		for _, r := range Parse(text) {
			if r.Quote == "" || r.Emoji == "" {
				t.Fatalf("Parse(%q) gave an empty reading %+v", text, r)
			}
		}
		if !utf8.ValidString(text) || normalize(text) == "" || firstEmoji(emoji) != emoji || emoji == "" {
			return
		}
		out := Format(emoji, text, 0)
		if removal {
			out = FormatRemoval(emoji, text, 0)
		}
		r, i, ok := Match(out, []string{text})
		if !ok || i != 0 || r.Emoji != Canonical(emoji) || r.Removal != removal {
			t.Fatalf("%q (from %q, %q, %v) read back as %+v ok=%v; readings %+v", out, text, emoji, removal, r, ok, Parse(out))
		}
	})
}

// BenchmarkMatch is one inbound SMS checked against a room's last 20
// messages: the work bubbled adds to every message that arrives.
func BenchmarkMatch(b *testing.B) {
	recent := make([]string, 20)
	for i := range recent {
		recent[i] = strings.Repeat("message text ", i+1)
	}
	for _, c := range []struct{ name, text string }{
		{"reaction", "Loved “" + recent[19][:40] + "…”"},
		{"plain", "Are we still on for dinner at the Italian place tonight? I said “maybe” earlier."},
		{"long sms", strings.Repeat("a “b” ", 2000)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Match(c.text, recent)
			}
		})
	}
}
