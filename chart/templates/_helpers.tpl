{{/* Chart name, overridable. */}}
{{- define "jes.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name; the release name alone when it already contains the chart name. */}}
{{- define "jes.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "jes.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "jes.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jes.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "jes.labels" -}}
helm.sh/chart: {{ include "jes.chart" . }}
{{ include "jes.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "jes.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "jes.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Secret holding RECORD_SIGNING_KEY (key "key"): the user's, or the one the chart creates. */}}
{{- define "jes.recordKeySecret" -}}
{{- .Values.recordSigningKey.existingSecret | default (printf "%s-record-key" (include "jes.fullname" .)) }}
{{- end }}

{{/* "true" when events must carry RCV_TOKEN: direct API mode with receiverToken.enabled. The
distributor cannot send a token; in its mode the receiver listens on loopback instead. */}}
{{- define "jes.receiverTokenOn" -}}
{{- if and (not .Values.distributor.enabled) .Values.receiverToken.enabled }}true{{ end }}
{{- end }}

{{/* Secret holding RCV_TOKEN (key "token"): the user's, or the one the chart creates. */}}
{{- define "jes.receiverTokenSecret" -}}
{{- .Values.receiverToken.existingSecret | default (printf "%s-receiver-token" (include "jes.fullname" .)) }}
{{- end }}

{{/* Namespace the Jobs run in (and where the RBAC for them lives). */}}
{{- define "jes.jobNamespace" -}}
{{- .Values.jobConfig.namespace | default .Release.Namespace }}
{{- end }}

{{/* Comma separated namespaces that get the Jobs' RBAC, job service account and job network
policy: the job namespace and jobConfig.extraNamespaces, each once. */}}
{{- define "jes.jobNamespaces" -}}
{{- prepend (.Values.jobConfig.extraNamespaces | default list) (include "jes.jobNamespace" .) | uniq | join "," }}
{{- end }}

{{/* ALLOWED_JOB_NAMESPACES: jobConfig.allowedNamespaces plus jobConfig.extraNamespaces, so that
a namespace prepared for Jobs need not be listed twice. */}}
{{- define "jes.allowedNamespaces" -}}
{{- $names := list }}
{{- range splitList "," .Values.jobConfig.allowedNamespaces }}
{{- with trim . }}{{ $names = append $names . }}{{ end }}
{{- end }}
{{- concat $names (.Values.jobConfig.extraNamespaces | default list) | uniq | join "," }}
{{- end }}

{{/* repository@digest when a digest is given (what ko prints), else repository:tag. */}}
{{- define "jes.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* The init container is the service image itself (copy-files subcommand) unless overridden. */}}
{{- define "jes.initContainerImage" -}}
{{- $ic := .Values.jobexecutorserviceinitcontainer.image }}
{{- if $ic.repository }}
{{- printf "%s:%s" $ic.repository ($ic.tag | default .Chart.AppVersion) }}
{{- else }}
{{- include "jes.image" . }}
{{- end }}
{{- end }}

{{/* <protocol>://<hostname>/api: the Keptn API as the distributor or the service sees it. */}}
{{- define "jes.keptnApiEndpoint" -}}
{{- with .Values.remoteControlPlane.api }}
{{- printf "%s://%s/api" .protocol (.hostname | trimSuffix "/") }}
{{- end }}
{{- end }}

{{/* Resource-service base URL: the distributor's proxy in sidecar mode, else through the API gateway. */}}
{{- define "jes.configurationService" -}}
{{- if .Values.distributor.enabled }}
{{- print "http://127.0.0.1:8081/resource-service" }}
{{- else }}
{{- printf "%s/resource-service" (include "jes.keptnApiEndpoint" .) }}
{{- end }}
{{- end }}

{{/*
Security contexts as JSON for the service (DEFAULT_POD_SECURITY_CONTEXT / DEFAULT_SECURITY_CONTEXT).
The original chart shipped capitalised keys (RunAsUser, ...); normalise them to the Kubernetes
field names so a strict decoder accepts old values files.
*/}}
{{- define "jes.normalizedJSON" -}}
{{- $out := dict }}
{{- range $k, $v := . }}
{{- if eq $k (untitle $k) }}
{{- $_ := set $out $k $v }}
{{- end }}
{{- end }}
{{- /* Capitalised keys can only come from the user's values, so they win over chart defaults. */}}
{{- range $k, $v := . }}
{{- if ne $k (untitle $k) }}
{{- $_ := set $out (untitle $k) $v }}
{{- end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/* Render-time checks for combinations the schema cannot express clearly. */}}
{{- define "jes.validate" -}}
{{- if .Values.remoteControlPlane.autoDetect.enabled }}
{{- fail "remoteControlPlane.autoDetect.enabled=true is not supported by this chart: set remoteControlPlane.api.protocol, hostname and token (or oauth) explicitly" }}
{{- end }}
{{- if and .Values.networkPolicy.egress.enabled (not .Values.networkPolicy.egress.k8sMasterCIDR) }}
{{- fail "networkPolicy.egress.enabled=true needs networkPolicy.egress.k8sMasterCIDR (the API server address, e.g. from `kubectl get endpoints kubernetes -n default`): without it the service could not create Jobs" }}
{{- end }}
{{- if eq .Values.jobConfig.serviceAccount.name (include "jes.serviceAccountName" .) }}
{{- fail (printf "jobConfig.serviceAccount.name %q is the service's own service account: Jobs would run with the right to create Jobs" .Values.jobConfig.serviceAccount.name) }}
{{- end }}
{{- if and (eq .Values.remoteControlPlane.api.authMode "oauth") (not .Values.remoteControlPlane.api.oauth.clientId) }}
{{- fail "remoteControlPlane.api.authMode=oauth needs remoteControlPlane.api.oauth.clientId, clientSecret and clientDiscovery" }}
{{- end }}
{{- end }}

{{/* Secrets this installation uses (PROTECTED_SECRETS): the Keptn API token and OAuth client
secret, the record signing key, the receiver token, image pull secrets and Secrets referenced by extraEnv. */}}
{{- define "jes.protectedSecrets" -}}
{{- $names := list "job-service-keptn-secrets" (include "jes.recordKeySecret" .) }}
{{- if include "jes.receiverTokenOn" . }}
{{- $names = append $names (include "jes.receiverTokenSecret" .) }}
{{- end }}
{{- range .Values.imagePullSecrets }}
{{- $names = append $names .name }}
{{- end }}
{{- range .Values.extraEnv }}
{{- with .valueFrom }}{{ with .secretKeyRef }}{{ $names = append $names .name }}{{ end }}{{ end }}
{{- end }}
{{- $names | uniq | join "," }}
{{- end }}

{{/* OAuth client settings, shared by the distributor and (in direct mode) the service. */}}
{{- define "jes.oauthEnv" -}}
- name: OAUTH_CLIENT_ID
  valueFrom:
    configMapKeyRef:
      name: job-service-config
      key: oauth_client_id
- name: OAUTH_CLIENT_SECRET
  valueFrom:
    secretKeyRef:
      name: job-service-keptn-secrets
      key: oauth_client_secret
- name: OAUTH_DISCOVERY
  valueFrom:
    configMapKeyRef:
      name: job-service-config
      key: oauth_discovery
- name: OAUTH_SCOPES
  valueFrom:
    configMapKeyRef:
      name: job-service-config
      key: oauth_scopes
{{- end }}
