// Command docsection replaces one generated section of a Markdown file with
// standard input: the lines between "<!-- begin generated: NAME -->" and
// "<!-- end generated: NAME -->". Everything else in the file — the
// hand-written analysis around the tables — is kept. A file without the
// section gets it appended.
//
// Usage: go run ./hack/docsection -file docs/benchmarks.md -section webhook < table.md
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	file := flag.String("file", "", "Markdown file to update")
	section := flag.String("section", "", "section name")
	flag.Parse()
	if *file == "" || *section == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: docsection -file FILE -section NAME < content")
		os.Exit(2)
	}
	content, err := io.ReadAll(os.Stdin)
	if err == nil {
		err = update(*file, *section, string(content))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "docsection:", err)
		os.Exit(1)
	}
}

func update(file, section, content string) error {
	old, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	out, err := replace(string(old), section, content)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return os.WriteFile(file, []byte(out), 0o644)
}

// replace puts content between the section's markers in doc.
func replace(doc, section, content string) (string, error) {
	begin := "<!-- begin generated: " + section + " -->\n"
	end := "<!-- end generated: " + section + " -->\n"
	block := begin + strings.TrimRight(content, "\n") + "\n" + end
	i := strings.Index(doc, begin)
	if i < 0 {
		if doc != "" && !strings.HasSuffix(doc, "\n\n") {
			doc = strings.TrimRight(doc, "\n") + "\n\n"
		}
		return doc + block, nil
	}
	j := strings.Index(doc[i:], end)
	if j < 0 {
		return "", fmt.Errorf("section %q has a begin marker and no end marker", section)
	}
	return doc[:i] + block + doc[i+j+len(end):], nil
}
