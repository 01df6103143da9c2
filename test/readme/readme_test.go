// Package readme runs the commands of the README's shell blocks: those that
// can run here run for real (the CLI on the quick start's manifest, the
// `go install` of the CLI built from this checkout, `helm install` and
// `helm upgrade` rendered with the real helm); those that need a running
// cluster or the release registry (kubectl, helm uninstall, helm install
// oci://..., explain --cluster, make demo) are listed as not run. A README
// command that fails, or one the test does not know how to treat, fails
// the test.
package readme

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sidecar-injector/sidecar-injector/test/testenv"
)

// shBlock matches a fenced block whose info string is exactly "sh".
var shBlock = regexp.MustCompile("(?ms)^```sh\n(.*?)^```\n")

// prelude stands in for the commands that need a cluster, and maps the
// others onto what runs here. Every command of a block goes through one of
// these functions and is logged as RAN or NOT RUN.
const prelude = `set -euo pipefail
ran()    { printf 'RAN: %s\n' "$*" >>"$LOG"; }
notrun() { printf 'NOT RUN: %s\n' "$*" >>"$LOG"; }
kubectl() { notrun kubectl "$@"; }
make()    { notrun make "$@"; }
helm() {
  local sub=$1; shift
  case $sub in
  install|upgrade)
    case " $* " in *" oci://"*) notrun helm "$sub" "$@" "(from the release registry)"; return ;; esac
    local args=() a
    for a in "$@"; do case $a in --reuse-values|--install) ;; *) args+=("$a") ;; esac; done
    ran helm "$sub" "$@" "(rendered with helm template)"
    command helm template "${args[@]}" --kube-version "$KUBE_VERSION" >/dev/null ;;
  *) notrun helm "$sub" "$@" ;;
  esac
}
go() {
  if [ "$1" = install ] && [[ "$2" == "$MODULE/cmd/sidecar-injector@"* ]]; then
    ran go install "$2" "(built from this checkout)"
    command go -C "$REPO" build -o "$BIN/sidecar-injector" ./cmd/sidecar-injector
  else
    notrun go "$@"
  fi
}
sidecar-injector() {
  case " $* " in
  *" --cluster "*|*" --from-cluster "*) notrun sidecar-injector "$@"; cat >/dev/null 2>&1 || true ;;
  *) ran sidecar-injector "$@"; command sidecar-injector "$@" ;;
  esac
}
`

func TestREADMECommands(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	repo, err := testenv.FindRepoRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(repo, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	bins, err := testenv.Build(t.Context(), testenv.DefaultBuildConfig(), slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		t.Fatalf("build helm: %v", err)
	}
	blocks := shBlock.FindAllSubmatch(readme, -1)
	if len(blocks) < 5 {
		t.Fatalf("%d sh blocks in README.md; want Install, Upgrade, Uninstall, Get the CLI and the quick start", len(blocks))
	}
	work, bin := t.TempDir(), t.TempDir()
	if err := os.Symlink(filepath.Join(repo, "charts"), filepath.Join(work, "charts")); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(t.TempDir(), "commands.log")
	env := append(os.Environ(),
		"PATH="+bin+string(os.PathListSeparator)+filepath.Dir(bins.Helm)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"LOG="+logFile, "REPO="+repo, "BIN="+bin, "REGISTRY=registry.test",
		"MODULE=github.com/sidecar-injector/sidecar-injector", "KUBE_VERSION="+bins.Versions.Kubernetes,
		"KUBECONFIG="+filepath.Join(work, "no-cluster"))
	var stderrAll strings.Builder
	for i, b := range blocks {
		ctx, cancel := context.WithTimeout(t.Context(), testenv.DefaultBuildConfig().Timeout)
		cmd := exec.CommandContext(ctx, "bash", "-c", prelude+string(b[1]))
		cmd.Dir, cmd.Env = work, env
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		err := cmd.Run()
		cancel()
		stderrAll.WriteString(stderr.String())
		if err != nil {
			t.Errorf("README block %d failed: %v\n%s\nstdout:\n%s\nstderr:\n%s", i+1, err, b[1], out.String(), stderr.String())
		}
	}
	log, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("README commands:\n%s", log)
	var ran, notRun int
	for line := range strings.SplitSeq(strings.TrimSpace(string(log)), "\n") {
		switch {
		case strings.HasPrefix(line, "RAN: "):
			ran++
		case strings.HasPrefix(line, "NOT RUN: "):
			notRun++
			what := strings.Fields(strings.TrimPrefix(line, "NOT RUN: "))
			known := what[0] == "kubectl" || what[0] == "make" || (what[0] == "helm" && what[1] == "uninstall") ||
				(what[0] == "helm" && strings.Contains(line, " oci://")) ||
				(what[0] == "sidecar-injector" && strings.Contains(line, "cluster"))
			if !known {
				t.Errorf("README command not run and not known to need a cluster: %s", line)
			}
		}
	}
	for _, want := range []string{
		"RAN: helm install sidecar-injector ./charts/sidecar-injector",
		"RAN: helm upgrade sidecar-injector",
		"RAN: go install github.com/sidecar-injector/sidecar-injector/cmd/sidecar-injector@",
		"RAN: sidecar-injector --version",
		"RAN: sidecar-injector inject -f deployment.yaml",
		"RAN: sidecar-injector uninject -f injected.yaml",
	} {
		if !strings.Contains(string(log), want) {
			t.Errorf("the README command %q was not run", want)
		}
	}
	if !strings.Contains(stderrAll.String(), "deployment/shop injected (inbound 10003") {
		t.Errorf("the quick start's inject did not say the Deployment was injected with inbound moved to 10003:\n%s", stderrAll.String())
	}
	if script, err := os.ReadFile(filepath.Join(work, "sidecar-injector.bash")); err != nil || !bytes.Contains(script, []byte("sidecar-injector")) {
		t.Errorf("completion script not written: %v", err)
	}
	t.Logf("%d README commands run here, %d need a cluster", ran, notRun)
}
