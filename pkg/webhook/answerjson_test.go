package webhook

import (
	"bytes"
	"encoding/json"
	"testing"
)

// answerCases covers each optional member present and absent, and strings
// that encoding/json escapes.
func answerCases() []reviewOut {
	odd := "a\"b\\c<d>e&f\x01\u2028é\xff"
	return []reviewOut{
		{APIVersion: admissionV1, Kind: reviewKind, Response: responseOut{UID: "u", Allowed: true}},
		{APIVersion: admissionV1beta1, Kind: reviewKind, Response: responseOut{UID: odd, Allowed: true, PatchType: "JSONPatch", Patch: []byte(`[{"op":"add"}]`), Warnings: []string{"w1", odd}}},
		{APIVersion: odd, Kind: reviewKind, Response: responseOut{UID: "u", Status: &statusOut{Status: "Failure", Message: odd, Reason: "BadRequest", Code: 400}}},
		{APIVersion: admissionV1, Kind: reviewKind, Response: responseOut{UID: "u", Status: &statusOut{Kind: "Status", APIVersion: "v1", Status: "", Message: "", Code: -1}, Warnings: []string{}}},
		{},
	}
}

func TestAnswerEncoding(t *testing.T) {
	t.Parallel()
	for _, o := range answerCases() {
		compareAnswer(t, &o)
	}
}

func compareAnswer(t *testing.T, o *reviewOut) {
	t.Helper()
	var want bytes.Buffer
	if err := json.NewEncoder(&want).Encode(o); err != nil {
		t.Fatal(err)
	}
	if got := o.appendJSON(nil); !bytes.Equal(got, want.Bytes()) {
		t.Errorf("appendJSON:\n%s\nencoding/json:\n%s", got, want.Bytes())
	}
}

// FuzzAnswerEncoding: the hand-written encoding is encoding/json's, byte
// for byte.
func FuzzAnswerEncoding(f *testing.F) {
	f.Add("u", "msg", "warn", []byte("[]"), true, int32(400))
	f.Add("\xff<", "\u2028\"", "\\", []byte{}, false, int32(-1))
	f.Fuzz(func(t *testing.T, uid, msg, warn string, patch []byte, allowed bool, code int32) {
		o := reviewOut{APIVersion: admissionV1, Kind: reviewKind, Response: responseOut{UID: uid, Allowed: allowed, Patch: patch, Warnings: []string{warn, msg}}}
		if len(patch) > 0 {
			o.Response.PatchType = "JSONPatch"
		}
		if !allowed {
			o.Response.Status = &statusOut{Status: "Failure", Message: msg, Reason: warn, Code: code}
		}
		compareAnswer(t, &o)
	})
}
