package tapback

import (
	"sort"
	"strings"
	"unicode"
)

// Limits of the wording around a quote: phones write a few words, so a
// longer text around a quote is a message that happens to quote something.
const (
	maxBefore = 60 // runes before the opening mark
	maxAfter  = 30 // runes after the closing mark (German puts the verb last)
)

// closers lists, for each opening quote mark, the marks that close it in
// the languages phones write: English “…”, German „…“ and ‚…‘, French « … »,
// and the straight marks some phones and keyboards use.
var closers = map[rune]string{
	'“':  "”“",
	'„':  "“”",
	'«':  "»",
	'‚':  "‘’",
	'‘':  "’",
	'"':  "\"",
	'”':  "”",
	'\'': "'",
}

// openEnded are the opening marks whose quote a phone may cut off together
// with its closing mark; straight marks are left out because an apostrophe
// in the wording would otherwise open a quote.
const openEnded = "“„«‚‘"

// Parse reads text as a reaction in every way it can be one, most likely
// first (the quote running to the end of the text before one followed by
// words). It returns nil when no reading fits. Parse does not know the
// conversation: use Match, or check Matches on each reading.
func Parse(text string) []Reaction {
	t := []rune(strings.Join(strings.Fields(text), " "))
	type cand struct {
		r     Reaction
		after int
	}
	var cands []cand
	seen := map[[2]int]bool{}
	for i, open := range t {
		if i > maxBefore {
			break
		}
		cl, ok := closers[open]
		if !ok {
			continue
		}
		closed := false
		for j := len(t) - 1; j > i && len(t)-1-j <= maxAfter; j-- {
			if !strings.ContainsRune(cl, t[j]) {
				continue
			}
			closed = true
			if r, ok := reading(t[:i], t[i+1:j], t[j+1:]); ok && !seen[[2]int{i, j}] {
				seen[[2]int{i, j}] = true
				cands = append(cands, cand{r, len(t) - 1 - j})
			}
		}
		if !closed && strings.ContainsRune(openEnded, open) && !strings.ContainsFunc(string(t[i+1:]), func(r rune) bool { return strings.ContainsRune(cl, r) }) {
			if r, ok := reading(t[:i], t[i+1:], nil); ok {
				r.Truncated = true
				cands = append(cands, cand{r, 0})
			}
		}
	}
	sort.SliceStable(cands, func(a, b int) bool { return cands[a].after < cands[b].after })
	out := make([]Reaction, 0, len(cands))
	for _, c := range cands {
		out = append(out, c.r)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// reading classifies one split of a text into wording, quote and wording.
func reading(before, quoted, after []rune) (Reaction, bool) {
	// The wording is short; the quote may be long: read the wording first.
	wording := strings.TrimSpace(string(before) + " " + strings.TrimRight(string(after), ".!"))
	emoji, removal, ok := classify(wording)
	if !ok {
		return Reaction{}, false
	}
	q := strings.TrimSpace(string(quoted))
	r := Reaction{Quote: q, Emoji: emoji, Removal: removal}
	for _, cut := range []string{"…", "..."} {
		if s, ok := strings.CutSuffix(q, cut); ok && strings.TrimSpace(s) != "" {
			r.Quote, r.Truncated = strings.TrimSpace(s), true
			break
		}
	}
	return r, r.Quote != ""
}

// Keywords of the wordings, lower case with straight apostrophes, matched
// as whole words. Sources are in the README.
var (
	removalWords = []string{"removed", "entfernt", "zurückgenommen", "retiré", "supprimé", "eliminó", "quitó", "ha eliminado", "ha quitado"}
	reactedWords = []string{"reacted", "reagiert", "réagi", "reaccionó", "ha reaccionado", "mention", "réaction", "reaktion", "reacción"}
	negations    = []string{"nicht", "no le", "n'a pas", "n'aime pas", "ne pas"}
	kinds        = []struct {
		emoji string
		words []string
	}{
		{Dislike, []string{"disliked", "dislike", "daumen runter", "pouce vers le bas"}},
		{Love, []string{"loved", "heart", "adore", "adoré", "j'adore", "encantó", "me encanta", "corazón", "geliebt", "liebt", "herz", "cœur", "coeur"}},
		{Like, []string{"liked", "like", "aimé", "aime", "j'aime", "gustó", "me gusta", "gefällt", "gefallen", "mag", "daumen hoch"}},
		{Laugh, []string{"laughed", "laugh", "ri", "rire", "rires", "haha", "rió", "risa", "gelacht", "lachte", "lacht"}},
		{Emphasize, []string{"emphasized", "emphasised", "exclamation", "souligné", "exclamó", "enfatizó", "destacó", "hervorgehoben", "betont", "ausrufezeichen"}},
		{Question, []string{"questioned", "question", "interrogation", "dudó", "cuestionó", "interrogación", "fragezeichen", "infrage", "frage", "fragt"}},
	}
)

// classify reads the wording around a quote: which reaction, and whether
// it is taken back. ok is false when the wording names no reaction.
func classify(wording string) (emoji string, removal, ok bool) {
	w := " " + strings.Map(func(r rune) rune {
		if strings.ContainsRune("’‘`´", r) {
			return '\''
		}
		return r
	}, strings.ToLower(wording)) + " "
	removal = hasWord(w, removalWords)
	reacted := hasWord(w, reactedWords)
	// An emoji in the wording is the reaction itself: Reacted 🎉 to, a
	// réagi avec 🔥 à, Removed a 😂 from, la mention « 😂 ».
	if e := firstEmoji(wording); e != "" && (removal || reacted) {
		return Canonical(e), removal, true
	}
	for _, k := range kinds {
		if !hasWord(w, k.words) {
			continue
		}
		if k.emoji == Like && hasWord(w, negations) {
			return Dislike, removal, true
		}
		return k.emoji, removal, true
	}
	return "", false, false
}

// hasWord says whether w (padded with spaces) holds one of words as whole words.
func hasWord(w string, words []string) bool {
	for _, k := range words {
		for from := 0; ; {
			i := strings.Index(w[from:], k)
			if i < 0 {
				break
			}
			i += from
			end := i + len(k)
			if !isLetter(lastRune(w[:i])) && !isLetter(firstRune(w[end:])) {
				return true
			}
			from = i + 1
		}
	}
	return false
}

func isLetter(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }

func lastRune(s string) rune {
	r := []rune(s)
	if len(r) == 0 {
		return ' '
	}
	return r[len(r)-1]
}

func firstRune(s string) rune {
	for _, r := range s {
		return r
	}
	return ' '
}

// firstEmoji returns the first emoji of s with its modifiers (variation
// selector, skin tone, keycap, ZWJ sequence), or "".
func firstEmoji(s string) string {
	rs := []rune(s)
	for i, r := range rs {
		if !isEmoji(r) {
			continue
		}
		j := i + 1
		for j < len(rs) {
			switch {
			case rs[j] == '\ufe0f' || rs[j] == '\u20e3' || (rs[j] >= 0x1F3FB && rs[j] <= 0x1F3FF):
				j++
			case rs[j] == '\u200d' && j+1 < len(rs) && isEmoji(rs[j+1]):
				j += 2
			default:
				return string(rs[i:j])
			}
		}
		return string(rs[i:j])
	}
	return ""
}

func isEmoji(r rune) bool {
	switch {
	case r >= 0x1F000 && r <= 0x1FAFF, r >= 0x2600 && r <= 0x27BF, r == 0x203C, r == 0x2049, r == 0x2B50, r == 0x2B55:
		return true
	}
	return false
}
