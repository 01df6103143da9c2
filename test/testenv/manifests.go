package testenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Manifest is one object of a rendered multi-document YAML stream.
type Manifest struct {
	APIVersion string
	Kind       string
	Name       string
	Raw        []byte // the document as rendered
}

// maxManifests bounds how many documents SplitManifests reads.
const maxManifests = 10000

// SplitManifests splits rendered manifests (helm template output) into
// objects; empty documents (comments only) are dropped.
func SplitManifests(manifests []byte) ([]Manifest, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifests)))
	var out []Manifest
	for i := 1; i <= maxManifests; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("rendered manifests: document %d: %w", i, err)
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			return nil, fmt.Errorf("rendered manifests: document %d: %w", i, err)
		}
		if head.Kind == "" {
			continue
		}
		out = append(out, Manifest{APIVersion: head.APIVersion, Kind: head.Kind, Name: head.Metadata.Name, Raw: doc})
	}
	return nil, fmt.Errorf("rendered manifests: more than %d documents", maxManifests)
}

// GetOK GETs url and wants 200 OK.
func GetOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
