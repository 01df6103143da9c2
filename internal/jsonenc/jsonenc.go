// Package jsonenc appends JSON values byte for byte as encoding/json
// writes them, for the hand-written encoders on the webhook's hot path
// (the patch, the status annotation, the Envoy overlay, the answer): the
// same bytes without encoding/json's reflection.
package jsonenc

import (
	"encoding/json"
	"unicode/utf8"
)

// String appends s quoted as encoding/json quotes it. Printable ASCII needs
// only " and \ escaped; anything else (control characters, the HTML
// characters encoding/json escapes, non-ASCII) goes through encoding/json.
func String(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s) // a string always marshals
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', c)
			start = i + 1
		}
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// Strings appends a string list (nil is null).
func Strings(dst []byte, list []string) []byte {
	if list == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '[')
	for i, s := range list {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = String(dst, s)
	}
	return append(dst, ']')
}

// OmitEmpty appends member (a comma, a quoted name and a colon) and s, or
// nothing when s is empty: a string member tagged omitempty.
func OmitEmpty(dst []byte, member, s string) []byte {
	if s == "" {
		return dst
	}
	return String(append(dst, member...), s)
}
