{{/*
Object names: the release name (or "<release>-shmesh" when it does not
contain "shmesh"), or fullnameOverride.
*/}}
{{- define "shmesh.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
Labels. Deliberately no helm.sh/chart, app.kubernetes.io/managed-by or
app.kubernetes.io/version: with default values the chart renders exactly the
objects of the plain manifests (manifests/*.yaml), and tests/helm.rs checks
that. Helm still tracks its objects through its own annotations.
*/}}
{{- define "shmesh.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "shmesh.labels" -}}
{{ include "shmesh.selectorLabels" . }}
{{- end -}}

{{- define "shmesh.policiesConfigMap" -}}
{{- .Values.policies.existingConfigMap | default (printf "%s-policies" (include "shmesh.fullname" .)) -}}
{{- end -}}
