package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	utilversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/rest"
)

// nativeSidecarMinimum is the first Kubernetes version with native sidecars
// (init containers with restartPolicy Always) on by default.
var nativeSidecarMinimum = utilversion.MajorMinor(1, 29)

// NativeSidecarSupport reads the cluster version to decide whether native
// sidecars are supported (Kubernetes 1.29+). Without a cluster (nil) it
// returns nil, nil (unknown: the engine's default applies). It makes one
// GET /version, with up to attempts tries.
func NativeSidecarSupport(ctx context.Context, cluster *rest.Config, attempts int) (*bool, error) {
	if cluster == nil {
		return nil, nil
	}
	cfg := rest.CopyConfig(cluster)
	cfg.Timeout = 10 * time.Second
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", cfg.Host, err)
	}
	base, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("server URL %q: %w", cfg.Host, err)
	}
	u := base.JoinPath("version").String()
	var lastErr error
	for i := range max(attempts, 1) {
		if i > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(i) * 2 * time.Second):
			}
		}
		var info version.Info
		if info, lastErr = getVersion(ctx, hc, u); lastErr == nil {
			ok, err := supportsNativeSidecar(info)
			if err != nil {
				return nil, err
			}
			return &ok, nil
		}
	}
	return nil, fmt.Errorf("read the cluster version from %s: %w", u, lastErr)
}

func getVersion(ctx context.Context, hc *http.Client, u string) (version.Info, error) {
	var info version.Info
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return info, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return info, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return info, err
	}
	if resp.StatusCode != http.StatusOK {
		return info, fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body[:min(len(body), 200)])))
	}
	if err := json.Unmarshal(body, &info); err != nil {
		return info, fmt.Errorf("decode version: %w", err)
	}
	return info, nil
}

// supportsNativeSidecar reads gitVersion (v1.29.3-gke.1) or, failing that,
// major/minor ("1", "29+").
func supportsNativeSidecar(info version.Info) (bool, error) {
	if v, err := utilversion.ParseGeneric(info.GitVersion); err == nil {
		return v.AtLeast(nativeSidecarMinimum), nil
	}
	major, err1 := strconv.Atoi(strings.TrimRight(info.Major, "+"))
	minor, err2 := strconv.Atoi(strings.TrimRight(info.Minor, "+"))
	if err1 != nil || err2 != nil {
		return false, fmt.Errorf("cluster version %q (major %q, minor %q): not a version", info.GitVersion, info.Major, info.Minor)
	}
	return utilversion.MajorMinor(uint(major), uint(minor)).AtLeast(nativeSidecarMinimum), nil
}
