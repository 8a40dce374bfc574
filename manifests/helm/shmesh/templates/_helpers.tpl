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

{{/*
The ingress gateway's Envoy bootstrap (templates/gateway.yaml), given
"address" and "port" of shmesh's xDS: what `shmesh bootstrap` prints for a
router node (tests/helm.rs compares them), except that Envoy finds shmesh by
DNS, holds listeners and clusters back until shmesh sends them
(initial_fetch_timeout 0s), and answers probes on 15021 from its admin
/ready (the admin stays on 127.0.0.1). The node comes with --config-yaml.
*/}}
{{- define "shmesh.ingressBootstrap" -}}
admin:
  address:
    socket_address: {address: 127.0.0.1, port_value: 15000}
dynamic_resources:
  ads_config:
    api_type: DELTA_GRPC
    transport_api_version: V3
    grpc_services:
    - envoy_grpc: {cluster_name: xds-grpc}
    set_node_on_first_message_only: true
  cds_config: {ads: {}, resource_api_version: V3, initial_fetch_timeout: 0s}
  lds_config: {ads: {}, resource_api_version: V3, initial_fetch_timeout: 0s}
static_resources:
  clusters:
  - name: xds-grpc
    type: STRICT_DNS
    dns_lookup_family: V4_PREFERRED
    connect_timeout: 1s
    load_assignment:
      cluster_name: xds-grpc
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {address: {{ .address | quote }}, port_value: {{ .port }}}
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
  - name: admin
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: admin
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {address: 127.0.0.1, port_value: 15000}
  listeners:
  - name: status
    address:
      socket_address: {address: 0.0.0.0, port_value: 15021}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: status
          route_config:
            virtual_hosts:
            - name: status
              domains: ["*"]
              routes:
              - match: {path: /healthz/ready}
                route: {cluster: admin, prefix_rewrite: /ready}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
{{- end -}}
