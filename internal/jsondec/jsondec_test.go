package jsondec

import (
	"bytes"
	"strings"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

var libOpts = jsonv2.JoinOptions(jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))

// skipAll scans b as one document with Skip.
func skipAll(b []byte) error {
	var d Decoder
	d.Reset(b)
	if err := d.Skip(); err != nil {
		return err
	}
	return d.End()
}

func TestSkipSyntax(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{
		`0`, `-0`, `1.5e-3`, `-12E+2`, `"a\"\\\/\b\f\n\r\t\u00e9"`, `true`, `false`, `null`, ` [ ] `, `{}`,
		`{"a":[1,{"b":null}],"a":2}`, `[[[[]]]]`, `{"":""}`, "\t\n\r [1 , 2]",
	} {
		if err := skipAll([]byte(ok)); err != nil {
			t.Errorf("%q: %v, want accepted", ok, err)
		}
	}
	for _, bad := range []string{
		``, ` `, `01`, `1.`, `.5`, `-`, `1e`, `+1`, `"\x"`, `"\u12"`, "\"a\x01\"", `"abc`, `tru`, `nul`, `True`,
		`[1,]`, `[,1]`, `{"a":1,}`, `{"a" 1}`, `{"a":}`, `{a:1}`, `{"a":1]`, `[1}`, `[1 2]`, `{"a":1 "b":2}`,
		`[] []`, `{}}`, `[`, `{"a":1`, "\"\\ud800\"", "\"\xff\"",
		strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth),
	} {
		if err := skipAll([]byte(bad)); err == nil {
			t.Errorf("%q accepted, want refused", bad)
		}
	}
	deep := strings.Repeat("[", maxDepth-2) + strings.Repeat("]", maxDepth-2)
	if err := skipAll([]byte(deep)); err != nil {
		t.Errorf("nesting of %d: %v", maxDepth-2, err)
	}
}

// FuzzSkip: the scanner accepts only JSON that go-json-experiment/json
// accepts, and accepts all of it that is ASCII without escapes and not
// nested near the limit.
func FuzzSkip(f *testing.F) {
	for _, s := range []string{`{"a":[1,-2.5e3,"x",true,false,null,{}]}`, `[1,]`, `"\u00e9"`, `{"a":1,"a":2}`, `01`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := skipAll(b)
		valid := jsontext.Value(b).IsValid(libOpts)
		if err == nil && !valid {
			t.Fatalf("scanner accepts %q, which the library refuses", b)
		}
		if err != nil && valid && bytes.IndexFunc(b, func(r rune) bool { return r >= 0x80 || r == '\\' }) < 0 && bytes.Count(b, []byte("["))+bytes.Count(b, []byte("{")) < maxDepth-2 {
			t.Fatalf("scanner refuses %q (%v), which the library accepts", b, err)
		}
	})
}

// FuzzScalars: a string or number the scanner reads is the value the
// library reads.
func FuzzScalars(f *testing.F) {
	for _, s := range []string{`"a"`, `"\u00e9\n"`, `null`, `-9223372036854775808`, `9223372036854775807`, `2147483648`, `-0`, `1e3`, `65535`, `true`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Decoder
		d.Reset(b)
		if s, err := d.String(); err == nil && d.End() == nil {
			var want string
			if err := jsonv2.Unmarshal(b, &want, libOpts); err != nil || want != s {
				t.Fatalf("String of %q = %q; the library: %q, %v", b, s, want, err)
			}
		}
		d.Reset(b)
		if n, err := d.Int(64); err == nil && d.End() == nil {
			var want int64
			if err := jsonv2.Unmarshal(b, &want, libOpts); err != nil || want != n {
				t.Fatalf("Int(64) of %q = %d; the library: %d, %v", b, n, want, err)
			}
		}
		d.Reset(b)
		if n, err := d.Int(32); err == nil && d.End() == nil {
			var want int32
			if err := jsonv2.Unmarshal(b, &want, libOpts); err != nil || int64(want) != n {
				t.Fatalf("Int(32) of %q = %d; the library: %d, %v", b, n, want, err)
			}
		}
		d.Reset(b)
		if n, err := d.Uint(16); err == nil && d.End() == nil {
			var want uint16
			if err := jsonv2.Unmarshal(b, &want, libOpts); err != nil || uint64(want) != n {
				t.Fatalf("Uint(16) of %q = %d; the library: %d, %v", b, n, want, err)
			}
		}
		d.Reset(b)
		if v, err := d.Bool(); err == nil && d.End() == nil {
			var want bool
			if err := jsonv2.Unmarshal(b, &want, libOpts); err != nil || want != v {
				t.Fatalf("Bool of %q = %v; the library: %v, %v", b, v, want, err)
			}
		}
	})
}

func TestScalars(t *testing.T) {
	t.Parallel()
	var d Decoder
	for _, tc := range []struct {
		in   string
		bits uint
		want int64
		ok   bool
	}{
		{`-9223372036854775808`, 64, -1 << 63, true},
		{`9223372036854775807`, 64, 1<<63 - 1, true},
		{`9223372036854775808`, 64, 0, false},
		{`-2147483648`, 32, -1 << 31, true},
		{`2147483648`, 32, 0, false},
		{`99999999999999999999999`, 64, 0, false},
		{`-0`, 32, 0, true},
		{`null`, 32, 0, true},
		{`1.0`, 32, 0, false},
		{`"1"`, 32, 0, false},
	} {
		d.Reset([]byte(tc.in))
		n, err := d.Int(tc.bits)
		if (err == nil) != tc.ok || n != tc.want {
			t.Errorf("Int(%d) of %s = %d, %v; want %d, ok %v", tc.bits, tc.in, n, err, tc.want, tc.ok)
		}
	}
	d.Reset([]byte(`"a\u00e9\"b"`))
	if s, err := d.String(); err != nil || s != "aé\"b" {
		t.Errorf("String = %q, %v", s, err)
	}
	d.Reset([]byte(`"caf` + "\xe9" + `"`)) // invalid UTF-8: left to the library
	if _, err := d.String(); err != ErrOutside {
		t.Errorf("String of invalid UTF-8: %v, want ErrOutside", err)
	}
}
