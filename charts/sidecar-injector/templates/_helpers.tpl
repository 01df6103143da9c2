{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "si.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: the resource name prefix. Kept short enough for "-webhook-tls" suffixes. */}}
{{- define "si.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 48 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 48 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 48 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "si.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object; call with (dict "ctx" $ "component" "webhook"). */}}
{{- define "si.labels" -}}
helm.sh/chart: {{ include "si.chart" .ctx }}
{{ include "si.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: sidecar-injector
{{- end -}}

{{- define "si.selectorLabels" -}}
app.kubernetes.io/name: {{ include "si.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}

{{/* An image reference from registry, repository, tag (default: the chart's appVersion) and digest (wins over the tag). Takes (dict "image" VALUES "appVersion" VERSION). */}}
{{- define "si.imageRef" -}}
{{- $i := .image -}}
{{- $name := $i.repository -}}
{{- if $i.registry }}{{ $name = printf "%s/%s" (trimSuffix "/" $i.registry) $i.repository }}{{ end -}}
{{- if $i.digest -}}
{{- printf "%s@%s" $name $i.digest -}}
{{- else -}}
{{- printf "%s:%s" $name (default .appVersion $i.tag) -}}
{{- end -}}
{{- end -}}

{{- define "si.image" -}}
{{- include "si.imageRef" (dict "image" .Values.image "appVersion" .Chart.AppVersion) -}}
{{- end -}}

{{- define "si.initImage" -}}
{{- include "si.imageRef" (dict "image" .Values.proxy.initImage "appVersion" .Chart.AppVersion) -}}
{{- end -}}

{{- define "si.webhookService" -}}{{ include "si.fullname" . }}-webhook{{- end -}}
{{- define "si.xdsService" -}}{{ include "si.fullname" . }}-xds{{- end -}}
{{- define "si.tlsSecret" -}}{{ include "si.fullname" . }}-webhook-tls{{- end -}}

{{/* Security context of the injector's own containers: passes the restricted Pod Security level. */}}
{{- define "si.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "si.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Namespaces never injected: the system ones, the release's own, and the configured ones. */}}
{{- define "si.excludedNamespaces" -}}
{{- $ns := list "kube-system" "kube-public" "kube-node-lease" .Release.Namespace -}}
{{- range .Values.injection.excludedNamespaces -}}
{{- $ns = append $ns . -}}
{{- end -}}
{{- toJson (uniq $ns) -}}
{{- end -}}

{{/*
The webhook serving certificate, made once per render and memoised on .Values
so that the Secret, the caBundle and the pod checksum all use the same one.
Kept across upgrades: the existing Secret is looked up and its CA reused; the
serving certificate is renewed under that CA when it expires within
certificates.renewBeforeDays, or when its names change (webhook.url). Returns
JSON: caCert, cert, key (PEM), caKey, notAfter (unix seconds), sans (a hash
of the names).
*/}}
{{- define "si.certs" -}}
{{- if not (hasKey .Values "_certs") -}}
{{- $svc := include "si.webhookService" . -}}
{{- $ns := .Release.Namespace -}}
{{- $dns := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) -}}
{{- /* The xDS server serves with the same certificate, for its own Service's names. */ -}}
{{- if include "si.xdsTLS" . -}}
{{- $xds := include "si.xdsService" . -}}
{{- $dns = concat $dns (list $xds (printf "%s.%s" $xds $ns) (printf "%s.%s.svc" $xds $ns) (printf "%s.%s.svc.cluster.local" $xds $ns)) -}}
{{- end -}}
{{- $ips := list -}}
{{- /* A webhook outside the cluster (webhook.url) is reached by that URL's host: the certificate names it too. */ -}}
{{- with .Values.webhook.url -}}
{{- $host := (urlParse .).hostname -}}
{{- if or (regexMatch "^[0-9.]+$" $host) (contains ":" $host) -}}
{{- $ips = append $ips $host -}}
{{- else -}}
{{- $dns = append $dns $host -}}
{{- end -}}
{{- end -}}
{{- $sans := sha256sum (toJson (list $dns $ips)) | trunc 16 -}}
{{- $days := int .Values.certificates.validityDays -}}
{{- $existing := lookup "v1" "Secret" $ns (include "si.tlsSecret" .) -}}
{{- $ca := dict -}}
{{- $out := dict -}}
{{- if and $existing $existing.data (hasKey $existing.data "ca.crt") (hasKey $existing.data "ca.key") (hasKey $existing.data "tls.crt") (hasKey $existing.data "tls.key") -}}
{{- $ca = buildCustomCert (index $existing.data "ca.crt") (index $existing.data "ca.key") -}}
{{- $notAfter := int64 (default "0" (index (default (dict) $existing.metadata.annotations) "sidecar.io/not-after")) -}}
{{- $renewAt := add (now | unixEpoch) (mul (int .Values.certificates.renewBeforeDays) 86400) -}}
{{- $oldSANs := index (default (dict) $existing.metadata.annotations) "sidecar.io/sans" -}}
{{- if and (gt $notAfter $renewAt) (eq $oldSANs $sans) -}}
{{- $_ := set $out "cert" (index $existing.data "tls.crt" | b64dec) -}}
{{- $_ := set $out "key" (index $existing.data "tls.key" | b64dec) -}}
{{- $_ := set $out "notAfter" $notAfter -}}
{{- end -}}
{{- else -}}
{{- $ca = genCA (printf "%s-ca" (include "si.fullname" .)) (int .Values.certificates.caValidityDays) -}}
{{- end -}}
{{- if not (hasKey $out "cert") -}}
{{- $leaf := genSignedCert (printf "%s.%s.svc" $svc $ns) $ips $dns $days $ca -}}
{{- $_ := set $out "cert" $leaf.Cert -}}
{{- $_ := set $out "key" $leaf.Key -}}
{{- $_ := set $out "notAfter" (add (now | unixEpoch) (mul $days 86400)) -}}
{{- end -}}
{{- $_ := set $out "sans" $sans -}}
{{- $_ := set $out "caCert" $ca.Cert -}}
{{- $_ := set $out "caKey" $ca.Key -}}
{{- $_ := set .Values "_certs" $out -}}
{{- end -}}
{{- toJson (get .Values "_certs") -}}
{{- end -}}

{{/* "true" when the xDS server serves TLS: xds.tls.enabled with the
chart's own certificates (with cert-manager the CA is not known when the
chart renders, and the proxies could not verify the server). */}}
{{- define "si.xdsTLS" -}}
{{- if .Values.xds.tls.enabled -}}true{{- end -}}
{{- end -}}

{{/* The injector config file, built as data from the values. */}}
{{- define "si.injectorConfig" -}}
{{- $p := .Values.proxy -}}
{{- $proxy := dict "image" $p.image "initImage" (include "si.initImage" .) "uid" (int64 $p.uid) "logLevel" $p.logLevel "nativeSidecar" (toString $p.nativeSidecar) "concurrency" (int64 $p.concurrency) "maxCPU" (toString $p.maxCPU) "maxMemory" (toString $p.maxMemory) "resources" $p.resources "initResources" $p.initResources -}}
{{- if $p.imagePullPolicy }}{{ $_ := set $proxy "imagePullPolicy" $p.imagePullPolicy }}{{ end -}}
{{- $redirect := dict "iptablesMode" $p.iptablesMode "ipv6" $p.ipv6 "excludeOutboundIPRanges" $p.excludeOutboundIPRanges "excludeOutboundPorts" $p.excludeOutboundPorts "excludeInboundPorts" $p.excludeInboundPorts -}}
{{- $injection := dict "defaultPolicy" .Values.injection.defaultPolicy "injectorNamespace" .Release.Namespace "excludedNamespaces" .Values.injection.excludedNamespaces "allowedSettings" .Values.injection.allowedSettings "prometheusAnnotations" .Values.injection.prometheusAnnotations -}}
{{- $xds := dict "address" (printf "%s.%s.svc" (include "si.xdsService" .) .Release.Namespace) "port" (int64 .Values.xds.port) -}}
{{- if include "si.xdsTLS" . -}}
{{- /* cert-manager's CA is not known at render time: the config says only that TLS is on (a stable part of the config hash), and the controller reads the CA from the Secret's ca.crt (--xds-ca-file). */ -}}
{{- if .Values.certificates.certManager.enabled }}{{ $_ := set $xds "tls" true }}{{ else }}{{ $_ := set $xds "caCert" (include "si.certs" . | fromJson).caCert }}{{ end -}}
{{- end -}}
{{- $ports := dict -}}
{{- range $k, $v := .Values.ports }}{{ $_ := set $ports $k (int64 $v) }}{{ end -}}
{{- $cfg := dict "apiVersion" "sidecar.io/v1alpha1" "kind" "InjectorConfig" "proxy" $proxy "ports" $ports "redirect" $redirect "injection" $injection "xds" $xds -}}
{{- toYaml $cfg -}}
{{- end -}}

{{- define "si.meshConfig" -}}
{{- $m := deepCopy .Values.xds.mesh -}}
{{- $cb := dict -}}
{{- range $k, $v := .Values.xds.mesh.circuitBreakers }}{{ $_ := set $cb $k (int64 $v) }}{{ end -}}
{{- $_ := set $m "circuitBreakers" $cb -}}
{{- $_ := set $m "apiVersion" "sidecar.io/v1alpha1" -}}
{{- $_ := set $m "kind" "MeshConfig" -}}
{{- toYaml $m -}}
{{- end -}}

{{/* Whether ServiceMonitors are rendered. */}}
{{- define "si.serviceMonitor" -}}
{{- $v := toString .Values.serviceMonitor.enabled -}}
{{- if or (eq $v "true") (and (eq $v "auto") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor")) -}}true{{- end -}}
{{- end -}}
