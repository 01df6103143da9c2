package webhook

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
)

// appendJSON appends o as encoding/json's Encoder writes it (the same bytes,
// newline included; TestAnswerEncoding and FuzzAnswerEncoding compare
// them), without its reflection: an answer is encoded on every request.
func (o *reviewOut) appendJSON(b []byte) []byte {
	b = append(b, `{"apiVersion":`...)
	b = appendJSONString(b, o.APIVersion)
	b = append(b, `,"kind":`...)
	b = appendJSONString(b, o.Kind)
	r := &o.Response
	b = append(b, `,"response":{"uid":`...)
	b = appendJSONString(b, r.UID)
	b = append(b, `,"allowed":`...)
	b = strconv.AppendBool(b, r.Allowed)
	if st := r.Status; st != nil {
		b = append(b, `,"status":{`...)
		if st.Kind != "" {
			b = append(b, `"kind":`...)
			b = appendJSONString(b, st.Kind)
			b = append(b, ',')
		}
		if st.APIVersion != "" {
			b = append(b, `"apiVersion":`...)
			b = appendJSONString(b, st.APIVersion)
			b = append(b, ',')
		}
		b = append(b, `"status":`...)
		b = appendJSONString(b, st.Status)
		b = append(b, `,"message":`...)
		b = appendJSONString(b, st.Message)
		if st.Reason != "" {
			b = append(b, `,"reason":`...)
			b = appendJSONString(b, st.Reason)
		}
		b = append(b, `,"code":`...)
		b = strconv.AppendInt(b, int64(st.Code), 10)
		b = append(b, '}')
	}
	if r.PatchType != "" {
		b = append(b, `,"patchType":`...)
		b = appendJSONString(b, r.PatchType)
	}
	if len(r.Patch) > 0 {
		b = append(b, `,"patch":"`...)
		b = base64.StdEncoding.AppendEncode(b, r.Patch)
		b = append(b, '"')
	}
	if len(r.Warnings) > 0 {
		b = append(b, `,"warnings":[`...)
		for i, w := range r.Warnings {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, w)
		}
		b = append(b, ']')
	}
	return append(b, "}}\n"...)
}

// appendJSONString appends s quoted as encoding/json quotes it: printable
// ASCII other than the quote, the backslash and the HTML characters is
// itself; anything else goes through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
