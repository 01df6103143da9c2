package jsonenc

import (
	"encoding/json"
	"testing"
)

func check(t *testing.T, list []string) {
	t.Helper()
	want, err := json.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	if got := Strings(nil, list); string(got) != string(want) {
		t.Errorf("Strings(%q) = %s, encoding/json: %s", list, got, want)
	}
	for _, s := range list {
		want, _ := json.Marshal(s)
		if got := String(nil, s); string(got) != string(want) {
			t.Errorf("String(%q) = %s, encoding/json: %s", s, got, want)
		}
	}
}

func TestStrings(t *testing.T) {
	t.Parallel()
	check(t, nil)
	check(t, []string{})
	check(t, []string{"", "plain", `a"b\c`, "<&>", "\x00\x1f\t\n", "é\u2028\u2029", "\xff\xfe", "$(POD_NAME)"})
}

// FuzzString: the bytes are encoding/json's.
func FuzzString(f *testing.F) {
	f.Add("a\"b\\<>&\u2028\xff")
	f.Fuzz(func(t *testing.T, s string) { check(t, []string{s, s}) })
}
