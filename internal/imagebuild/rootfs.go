package imagebuild

import (
	"archive/tar"
	"bytes"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
)

// entry is one file, directory or symlink of an image's root filesystem.
type entry struct {
	typ  byte // tar.TypeReg, tar.TypeDir or tar.TypeSymlink
	mode int64
	link string // symlink target
	data []byte
}

// rootfs is a root filesystem being assembled: clean relative paths
// ("usr/sbin/xtables-nft-multi") to entries. Owners are always root and
// file modes are normalised when it is written, so the same inputs give
// the same bytes on any machine.
type rootfs map[string]entry

func cleanPath(p string) (string, error) {
	p = strings.TrimLeft(strings.TrimPrefix(p, "./"), "/")
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", fmt.Errorf("path %q leaves the root", p)
		}
	}
	c := path.Clean("/" + p)
	return strings.TrimPrefix(c, "/"), nil
}

// addFile adds a regular file; exec says whether it is executable.
func (r rootfs) addFile(p string, data []byte, exec bool) error {
	c, err := cleanPath(p)
	if err != nil || c == "" {
		return fmt.Errorf("add file %q: bad path", p)
	}
	mode := int64(0o644)
	if exec {
		mode = 0o755
	}
	if old, ok := r[c]; ok && old.typ != tar.TypeReg {
		return fmt.Errorf("add file %q: already a %s", c, typeName(old.typ))
	}
	r[c] = entry{typ: tar.TypeReg, mode: mode, data: data}
	return nil
}

func (r rootfs) addSymlink(p, target string) error {
	c, err := cleanPath(p)
	if err != nil || c == "" {
		return fmt.Errorf("add symlink %q: bad path", p)
	}
	r[c] = entry{typ: tar.TypeSymlink, mode: 0o777, link: target}
	return nil
}

func (r rootfs) addDir(p string) error {
	c, err := cleanPath(p)
	if err != nil {
		return fmt.Errorf("add directory %q: %w", p, err)
	}
	if c == "" {
		return nil
	}
	if old, ok := r[c]; ok && old.typ != tar.TypeDir {
		return fmt.Errorf("add directory %q: already a %s", c, typeName(old.typ))
	}
	r[c] = entry{typ: tar.TypeDir, mode: 0o755}
	return nil
}

func typeName(t byte) string {
	switch t {
	case tar.TypeReg:
		return "file"
	case tar.TypeDir:
		return "directory"
	case tar.TypeSymlink:
		return "symlink"
	}
	return fmt.Sprintf("tar type %q", t)
}

// tar writes the root filesystem as a tar stream in path order, with every
// parent directory present, owner 0:0 and every time set to mtime.
func (r rootfs) tar(mtime time.Time) ([]byte, error) {
	all := map[string]entry{}
	for p, e := range r {
		all[p] = e
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if _, ok := r[d]; !ok {
				all[d] = entry{typ: tar.TypeDir, mode: 0o755}
			}
		}
	}
	paths := make([]string, 0, len(all))
	for p := range all {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		e := all[p]
		name := p
		if e.typ == tar.TypeDir {
			name += "/"
		}
		h := &tar.Header{
			Typeflag: e.typ, Name: name, Linkname: e.link, Mode: e.mode,
			Size: int64(len(e.data)), ModTime: mtime, Format: tar.FormatPAX,
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("write %s to the layer: %w", p, err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, fmt.Errorf("write %s to the layer: %w", p, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
