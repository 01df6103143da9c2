package main

import "testing"

func TestReplace(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"empty file", "", "<!-- begin generated: x -->\nnew\n<!-- end generated: x -->\n"},
		{"appended", "# T\nintro\n", "# T\nintro\n\n<!-- begin generated: x -->\nnew\n<!-- end generated: x -->\n"},
		{"replaced, notes kept",
			"# T\n<!-- begin generated: x -->\nold\n<!-- end generated: x -->\nnotes\n",
			"# T\n<!-- begin generated: x -->\nnew\n<!-- end generated: x -->\nnotes\n"},
		{"other section untouched",
			"<!-- begin generated: y -->\ny\n<!-- end generated: y -->\n",
			"<!-- begin generated: y -->\ny\n<!-- end generated: y -->\n\n<!-- begin generated: x -->\nnew\n<!-- end generated: x -->\n"},
	} {
		got, err := replace(tc.doc, "x", "new\n")
		if err != nil || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if _, err := replace("<!-- begin generated: x -->\nno end\n", "x", "new"); err == nil {
		t.Error("a section without its end marker must be an error")
	}
}
