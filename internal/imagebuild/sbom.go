package imagebuild

import (
	"bytes"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// SPDX 2.3, as JSON: the parts an SBOM of these images needs.
type spdxDocument struct {
	SPDXVersion       string             `json:"spdxVersion"`
	DataLicense       string             `json:"dataLicense"`
	SPDXID            string             `json:"SPDXID"`
	Name              string             `json:"name"`
	DocumentNamespace string             `json:"documentNamespace"`
	CreationInfo      spdxCreationInfo   `json:"creationInfo"`
	DocumentDescribes []string           `json:"documentDescribes"`
	Packages          []spdxPackage      `json:"packages"`
	Relationships     []spdxRelationship `json:"relationships"`
}

type spdxCreationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

type spdxPackage struct {
	SPDXID           string            `json:"SPDXID"`
	Name             string            `json:"name"`
	VersionInfo      string            `json:"versionInfo,omitempty"`
	Supplier         string            `json:"supplier,omitempty"`
	DownloadLocation string            `json:"downloadLocation"`
	FilesAnalyzed    bool              `json:"filesAnalyzed"`
	Checksums        []spdxChecksum    `json:"checksums,omitempty"`
	LicenseConcluded string            `json:"licenseConcluded"`
	LicenseDeclared  string            `json:"licenseDeclared"`
	CopyrightText    string            `json:"copyrightText"`
	SourceInfo       string            `json:"sourceInfo,omitempty"`
	Purpose          string            `json:"primaryPackagePurpose,omitempty"`
	ExternalRefs     []spdxExternalRef `json:"externalRefs,omitempty"`
}

type spdxChecksum struct {
	Algorithm string `json:"algorithm"`
	Value     string `json:"checksumValue"`
}

type spdxExternalRef struct {
	Category string `json:"referenceCategory"`
	Type     string `json:"referenceType"`
	Locator  string `json:"referenceLocator"`
}

type spdxRelationship struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

// sbomDoc collects one image's SBOM over its platforms.
type sbomDoc struct {
	image   string
	cfg     Config
	created time.Time
	pkgs    map[string]spdxPackage
	rels    map[spdxRelationship]bool
	images  []string
}

func (s *sbomDoc) init(image string, cfg Config, created time.Time) {
	*s = sbomDoc{image: image, cfg: cfg, created: created, pkgs: map[string]spdxPackage{}, rels: map[spdxRelationship]bool{}}
}

var spdxIDUnsafe = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

func spdxID(parts ...string) string {
	return "SPDXRef-" + spdxIDUnsafe.ReplaceAllString(strings.Join(parts, "-"), "-")
}

func (s *sbomDoc) add(p spdxPackage) {
	if _, ok := s.pkgs[p.SPDXID]; !ok {
		s.pkgs[p.SPDXID] = p
	}
}

func (s *sbomDoc) rel(a, typ, b string) { s.rels[spdxRelationship{a, typ, b}] = true }

func goPurl(path, version string) string {
	return "pkg:golang/" + path + "@" + version
}

// addPlatform records one platform's image: its manifest, the Go
// program's modules (from the binary's build info) and the Debian packages.
func (s *sbomDoc) addPlatform(platform string, manifest v1.Hash, binaries []string, debs []debPackage) error {
	_, arch, _ := strings.Cut(platform, "/")
	imgID := spdxID("image", s.image, arch)
	s.images = append(s.images, imgID)
	s.add(spdxPackage{
		SPDXID: imgID, Name: s.image, VersionInfo: s.cfg.Version,
		DownloadLocation: "NOASSERTION", Purpose: "CONTAINER",
		Checksums:        []spdxChecksum{{"SHA256", manifest.Hex}},
		LicenseConcluded: "NOASSERTION", LicenseDeclared: "NOASSERTION", CopyrightText: "NOASSERTION",
		ExternalRefs: []spdxExternalRef{{"PACKAGE-MANAGER", "purl",
			fmt.Sprintf("pkg:oci/%s@%s?arch=%s", s.image, strings.ReplaceAll(manifest.String(), ":", "%3A"), arch)}},
	})

	for _, binary := range binaries {
		bi, err := buildinfo.ReadFile(binary)
		if err != nil {
			return fmt.Errorf("read the build info of %s: %w", binary, err)
		}
		mainID := spdxID("go", bi.Path, arch)
		s.add(spdxPackage{
			SPDXID: mainID, Name: bi.Path, VersionInfo: s.cfg.Version,
			DownloadLocation: "https://" + Module, Purpose: "APPLICATION",
			LicenseConcluded: "NOASSERTION", LicenseDeclared: "Apache-2.0", CopyrightText: "NOASSERTION",
			SourceInfo:   "revision " + s.cfg.Revision,
			ExternalRefs: []spdxExternalRef{{"PACKAGE-MANAGER", "purl", goPurl(bi.Main.Path, s.cfg.Version)}},
		})
		s.rel(imgID, "CONTAINS", mainID)
		stdID := spdxID("go", "stdlib", bi.GoVersion)
		s.add(spdxPackage{
			SPDXID: stdID, Name: "stdlib", VersionInfo: bi.GoVersion, DownloadLocation: "https://go.dev/dl/",
			LicenseConcluded: "NOASSERTION", LicenseDeclared: "BSD-3-Clause", CopyrightText: "NOASSERTION", Purpose: "LIBRARY",
			ExternalRefs: []spdxExternalRef{{"PACKAGE-MANAGER", "purl", goPurl("stdlib", bi.GoVersion)}},
		})
		s.rel(mainID, "DEPENDS_ON", stdID)
		for _, d := range bi.Deps {
			if d.Replace != nil {
				d = d.Replace
			}
			id := spdxID("go", d.Path, d.Version)
			p := spdxPackage{
				SPDXID: id, Name: d.Path, VersionInfo: d.Version,
				DownloadLocation: "https://proxy.golang.org/" + d.Path + "/@v/" + d.Version + ".zip", Purpose: "LIBRARY",
				LicenseConcluded: "NOASSERTION", LicenseDeclared: "NOASSERTION", CopyrightText: "NOASSERTION",
				ExternalRefs: []spdxExternalRef{{"PACKAGE-MANAGER", "purl", goPurl(d.Path, d.Version)}},
			}
			if h, ok := strings.CutPrefix(d.Sum, "h1:"); ok {
				p.SourceInfo = "go.sum h1:" + h
			}
			s.add(p)
			s.rel(mainID, "DEPENDS_ON", id)
		}
	}
	for _, d := range debs {
		id := spdxID("deb", d.Name, d.Version, d.Arch)
		s.add(spdxPackage{
			SPDXID: id, Name: d.Name, VersionInfo: d.Version, Supplier: "Organization: Debian",
			DownloadLocation: "NOASSERTION", FilesAnalyzed: false, Purpose: "LIBRARY",
			Checksums:        []spdxChecksum{{"SHA256", d.SHA256}},
			LicenseConcluded: "NOASSERTION", LicenseDeclared: "NOASSERTION",
			CopyrightText: "NOASSERTION (see /usr/share/doc/" + d.Name + "/copyright in the image)",
			SourceInfo:    "Debian source package " + d.Source,
			ExternalRefs: []spdxExternalRef{{"PACKAGE-MANAGER", "purl",
				fmt.Sprintf("pkg:deb/debian/%s@%s?arch=%s", d.Name, strings.ReplaceAll(d.Version, ":", "%3A"), d.Arch)}},
		})
		s.rel(imgID, "CONTAINS", id)
	}
	return nil
}

// write writes the SBOM; its namespace names the image index digest, so
// the same images give the same file.
func (s *sbomDoc) write(file string, index v1.Hash) error {
	doc := spdxDocument{
		SPDXVersion: "SPDX-2.3", DataLicense: "CC0-1.0", SPDXID: "SPDXRef-DOCUMENT",
		Name:              s.image + "-" + s.cfg.Version,
		DocumentNamespace: "https://" + Module + "/spdx/" + s.image + "/" + index.String(),
		CreationInfo: spdxCreationInfo{
			Created:  s.created.Format(time.RFC3339),
			Creators: []string{"Tool: sidecar-injector hack/images", "Organization: sidecar-injector"},
		},
		DocumentDescribes: slices.Clone(s.images),
	}
	for _, p := range s.pkgs {
		doc.Packages = append(doc.Packages, p)
	}
	slices.SortFunc(doc.Packages, func(a, b spdxPackage) int { return strings.Compare(a.SPDXID, b.SPDXID) })
	for r := range s.rels {
		doc.Relationships = append(doc.Relationships, r)
	}
	for _, id := range s.images {
		doc.Relationships = append(doc.Relationships, spdxRelationship{"SPDXRef-DOCUMENT", "DESCRIBES", id})
	}
	slices.SortFunc(doc.Relationships, func(a, b spdxRelationship) int {
		return strings.Compare(a.Element+" "+a.Type+" "+a.Related, b.Element+" "+b.Type+" "+b.Related)
	})
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	return os.WriteFile(file, buf.Bytes(), 0o644)
}
