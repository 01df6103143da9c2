package webhook

import (
	"encoding/base64"
	"strconv"

	"github.com/sidecar-injector/sidecar-injector/internal/jsonenc"
)

// appendJSON appends o as encoding/json's Encoder writes it (the same bytes,
// newline included; TestAnswerEncoding and FuzzAnswerEncoding compare
// them), without its reflection: an answer is encoded on every request.
func (o *reviewOut) appendJSON(b []byte) []byte {
	b = append(b, `{"apiVersion":`...)
	b = jsonenc.String(b, o.APIVersion)
	b = append(b, `,"kind":`...)
	b = jsonenc.String(b, o.Kind)
	r := &o.Response
	b = append(b, `,"response":{"uid":`...)
	b = jsonenc.String(b, r.UID)
	b = append(b, `,"allowed":`...)
	b = strconv.AppendBool(b, r.Allowed)
	if st := r.Status; st != nil {
		b = append(b, `,"status":{`...)
		if st.Kind != "" {
			b = append(b, `"kind":`...)
			b = jsonenc.String(b, st.Kind)
			b = append(b, ',')
		}
		if st.APIVersion != "" {
			b = append(b, `"apiVersion":`...)
			b = jsonenc.String(b, st.APIVersion)
			b = append(b, ',')
		}
		b = append(b, `"status":`...)
		b = jsonenc.String(b, st.Status)
		b = append(b, `,"message":`...)
		b = jsonenc.String(b, st.Message)
		b = jsonenc.OmitEmpty(b, `,"reason":`, st.Reason)
		b = append(b, `,"code":`...)
		b = strconv.AppendInt(b, int64(st.Code), 10)
		b = append(b, '}')
	}
	b = jsonenc.OmitEmpty(b, `,"patchType":`, r.PatchType)
	if len(r.Patch) > 0 {
		b = append(b, `,"patch":"`...)
		b = base64.StdEncoding.AppendEncode(b, r.Patch)
		b = append(b, '"')
	}
	if len(r.Warnings) > 0 {
		b = append(b, `,"warnings":`...)
		b = jsonenc.Strings(b, r.Warnings)
	}
	return append(b, "}}\n"...)
}
