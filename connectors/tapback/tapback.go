// Package tapback turns reactions into the texts phones send for them over
// SMS, and such texts back into reactions.
//
// Outbound it writes the iPhone's English wordings (Liked “…”, Removed a
// heart from “…”, Reacted 🎉 to “…”), which iPhones and Google Messages both
// show as reactions. Inbound it reads the wordings of iPhones (classic
// tapbacks and iOS 18 emoji reactions) and of Google Messages, in English,
// German, French and Spanish. Recognition is structural: a short wording
// and a quote of a message. Parse offers every reading; the caller takes
// the first whose quote matches one of the last messages of the
// conversation (Match), which is what keeps an ordinary message that quotes
// something from turning into a reaction.
//
// The package is pure: no I/O, no goroutines, safe for concurrent use.
package tapback

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// The emoji of the six classic tapbacks, as bubbled puts them on Matrix.
const (
	Like      = "👍"
	Love      = "❤️"
	Laugh     = "😂"
	Emphasize = "‼️"
	Question  = "❓"
	Dislike   = "👎"
)

// DefaultQuoteRunes is how much of a message Format quotes by default.
const DefaultQuoteRunes = 60

// Reaction is one reading of a text as a reaction.
type Reaction struct {
	// Emoji is the reaction's Matrix key: one of the six tapback constants
	// or the emoji the phone named.
	Emoji string
	// Quote is the quoted text without its marks and without a trailing
	// ellipsis.
	Quote string
	// Truncated is true when the phone cut the quote short ("…", "...", or
	// no closing mark).
	Truncated bool
	// Removal is true when the text takes a reaction back.
	Removal bool
}

// classic is one of the six tapbacks and its English wordings.
type classic struct {
	emoji, verb, removal string
	aliases              []string // other emoji that mean the same tapback
}

var classics = []classic{
	{Like, "Liked", "Removed a like from", []string{"👍🏻", "👍🏼", "👍🏽", "👍🏾", "👍🏿"}},
	{Love, "Loved", "Removed a heart from", []string{"❤", "♥️", "♥", "😍", "🥰"}},
	{Laugh, "Laughed at", "Removed a laugh from", []string{"😆", "🤣", "😹"}},
	{Emphasize, "Emphasized", "Removed an exclamation from", []string{"‼", "❗", "❗️", "❕", "!!"}},
	{Question, "Questioned", "Removed a question mark from", []string{"❓️", "❔", "?"}},
	{Dislike, "Disliked", "Removed a dislike from", []string{"👎🏻", "👎🏼", "👎🏽", "👎🏾", "👎🏿"}},
}

// Canonical maps an emoji to the tapback it stands for (👍🏽 -> 👍, ❤ ->
// ❤️), or returns it unchanged when it is no tapback.
func Canonical(emoji string) string {
	e := strings.TrimSpace(emoji)
	bare := strings.ReplaceAll(e, "\ufe0f", "")
	for _, c := range classics {
		if bare == strings.ReplaceAll(c.emoji, "\ufe0f", "") {
			return c.emoji
		}
		for _, a := range c.aliases {
			if bare == strings.ReplaceAll(a, "\ufe0f", "") {
				return c.emoji
			}
		}
	}
	return e
}

// Format is the text an iPhone sends for reacting with emoji to a message
// whose text is text: Liked “…” for the six tapbacks, Reacted 🎉 to “…” for
// any other emoji. The quote is cut to maxQuote runes (DefaultQuoteRunes
// when <= 0) and then ends in "…".
func Format(emoji, text string, maxQuote int) string {
	q := quote(text, maxQuote)
	e := Canonical(emoji)
	for _, c := range classics {
		if c.emoji == e {
			return c.verb + " " + q
		}
	}
	return "Reacted " + e + " to " + q
}

// FormatRemoval is the text an iPhone sends for taking the reaction back:
// Removed a like from “…”, Removed a 🎉 from “…”.
func FormatRemoval(emoji, text string, maxQuote int) string {
	q := quote(text, maxQuote)
	e := Canonical(emoji)
	for _, c := range classics {
		if c.emoji == e {
			return c.removal + " " + q
		}
	}
	return "Removed a " + e + " from " + q
}

// quote puts the start of text between curly quotes, on one line.
func quote(text string, maxQuote int) string {
	if maxQuote <= 0 {
		maxQuote = DefaultQuoteRunes
	}
	t := strings.Join(strings.Fields(text), " ")
	if utf8.RuneCountInString(t) > maxQuote {
		r := []rune(t)
		t = strings.TrimRightFunc(string(r[:maxQuote]), unicode.IsSpace) + "…"
	}
	return "“" + t + "”"
}

// Matches says whether the reaction's quote is (the start of, when cut
// short) message: compared without case, with curly and straight quotes and
// apostrophes alike, and with runs of white space as one space.
func (r Reaction) Matches(message string) bool {
	q, m := normalize(r.Quote), normalize(message)
	switch {
	case m == "":
		return false
	case q == m:
		return q != ""
	case !r.Truncated:
		return false
	case m == q+"…" || m == q+"...":
		return true // the message itself ended in an ellipsis
	}
	// A cut quote must still say enough to pick one message.
	return utf8.RuneCountInString(q) >= 3 && strings.HasPrefix(m, q)
}

// Match reads text as a reaction to one of recent (newest first): it
// returns the first reading whose quote matches a message and that
// message's index. ok is false when text quotes none of them: it is then an
// ordinary message.
func Match(text string, recent []string) (r Reaction, index int, ok bool) {
	for _, cand := range Parse(text) {
		for i, m := range recent {
			if cand.Matches(m) {
				return cand, i, true
			}
		}
	}
	return Reaction{}, -1, false
}

// normalize folds what phones change when they quote.
func normalize(s string) string {
	var b strings.Builder
	space := false
	for _, r := range strings.ToLower(s) {
		switch {
		case unicode.IsSpace(r):
			space = true
			continue
		case strings.ContainsRune("“”„‟«»\"", r):
			r = '"'
		case strings.ContainsRune("‘’‚‛‹›'`´", r):
			r = '\''
		case r == '\ufe0f':
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return b.String()
}

// QuoteReply starts a reply with a short quote of the message it answers,
// for routes without replies: `> start of the message...` on its own line.
// It keeps to the GSM 7-bit alphabet (">" and "...") so that the quote
// does not turn the SMS into UCS-2.
func QuoteReply(answered, text string, maxQuote int) string {
	if maxQuote <= 0 {
		maxQuote = DefaultQuoteRunes
	}
	q := strings.Join(strings.Fields(answered), " ")
	if r := []rune(q); len(r) > maxQuote {
		q = strings.TrimRightFunc(string(r[:maxQuote]), unicode.IsSpace) + "..."
	}
	return "> " + q + "\n" + text
}
