// Package testenv is the project's local Kubernetes control plane: it builds
// pinned etcd, kube-apiserver, kube-controller-manager, kubectl and helm from
// Go modules (hack/tools), caches them outside the repository, and runs them
// on 127.0.0.1 with free ports, generated certificates and a static admin
// token. There is no kubelet and no scheduler: pods are stored, not run, which
// is all an admission webhook needs.
//
// The e2e tests (test/e2e), `make demo` (hack/demo) and the hack/testenv
// command use it.
package testenv
