package iptablestest

import (
	"fmt"
	"strings"
)

// token is one argument of a rule line. quoted records whether it came from
// a double-quoted string, because a quoted "!" or "--x" is a value, never an
// operator or an option.
type token struct {
	text   string
	quoted bool
}

// tokenize splits a line the way iptables-restore does: arguments are
// separated by spaces or tabs; a double quote opens a quoted section in
// which a backslash escapes the next character; the closing quote ends the
// argument. Single quotes have no special meaning (iptables-save never emits
// them: it escapes ' inside double quotes instead).
func tokenize(s string) ([]token, error) {
	return tokenizeInto(s, nil)
}

// tokenizeInto is tokenize appending to buf, so a parser can reuse one
// buffer for every line. Tokens are substrings of s unless unescaping was
// needed.
func tokenizeInto(s string, buf []token) ([]token, error) {
	toks := buf[:0]
	i := 0
	for i < len(s) {
		c := s[i]
		if c == ' ' || c == '\t' {
			i++
			continue
		}
		start := i
		j := i
		for j < len(s) && s[j] != ' ' && s[j] != '\t' && s[j] != '"' {
			j++
		}
		if j == len(s) || s[j] != '"' {
			toks = append(toks, token{text: s[i:j]})
			i = j
			continue
		}
		if j == i {
			// Fast path: a quoted argument without escapes is a substring.
			if end := strings.IndexByte(s[j+1:], '"'); end >= 0 && strings.IndexByte(s[j+1:j+1+end], '\\') < 0 {
				toks = append(toks, token{text: s[j+1 : j+1+end], quoted: true})
				i = j + 2 + end
				continue
			}
		}
		var b strings.Builder
		b.WriteString(s[i:j])
		i = j + 1
		closed := false
		for i < len(s) {
			c := s[i]
			if c == '\\' && i+1 < len(s) {
				b.WriteByte(s[i+1])
				i += 2
				continue
			}
			i++
			if c == '"' {
				closed = true
				break
			}
			b.WriteByte(c)
		}
		if !closed {
			return nil, fmt.Errorf("unterminated quote starting at column %d", start+1)
		}
		toks = append(toks, token{text: b.String(), quoted: true})
	}
	return toks, nil
}
