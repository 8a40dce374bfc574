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
"true" when the ingress gateway proves its identity to shmesh:
gateways.ingress.identity.enabled, or by default ca.enabled.
*/}}
{{- define "shmesh.ingressIdentity" -}}
{{- $identity := .Values.ca.enabled -}}
{{- with .Values.gateways.ingress.identity -}}
{{- if and (hasKey . "enabled") (not (kindIs "invalid" .enabled)) -}}
{{- $identity = .enabled -}}
{{- end -}}
{{- end -}}
{{- if $identity }}true{{ end -}}
{{- end -}}

{{/*
The ingress gateway's Envoy bootstrap (templates/gateway.yaml), given
"address" and "port" of shmesh's xDS: what `shmesh bootstrap` prints for a
router node (tests/helm.rs compares them), except that Envoy finds shmesh by
DNS, holds listeners and clusters back until shmesh sends them
(initial_fetch_timeout 0s), and answers probes on 15021 from its admin
/ready (the admin stays on 127.0.0.1). Like `shmesh bootstrap`, it carries
Istio's stats tags and serves /stats/prometheus on 15090 from the admin. The node comes with --config-yaml.
With "token" (a dict of "file", "root" and "serverName"), ADS goes over
Envoy's Google gRPC client to the xDS TLS listener at address:port, trusting
only the root file and checking the listener's certificate for serverName,
with the token file's content as its bearer token: `shmesh bootstrap
--token-file FILE --xds-root-cert ROOT --xds-tls-name NAME`. (That prints the
xds-grpc cluster too, unused by ADS then; the chart keeps it alike.)
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
    {{- with .token }}
    {{- $host := $.address }}
    {{- if contains ":" $host }}
    {{- $host = printf "[%s]" $host }}
    {{- end }}
    - google_grpc:
        target_uri: {{ printf "%s:%v" $host $.port | quote }}
        stat_prefix: xds-grpc
        channel_credentials:
          ssl_credentials:
            root_certs: {filename: {{ .root | quote }}}
        call_credentials:
        - from_plugin:
            name: envoy.grpc_credentials.file_based_metadata
            typed_config:
              "@type": type.googleapis.com/envoy.config.grpc_credential.v3.FileBasedMetadataConfig
              secret_data: {filename: {{ .file | quote }}}
              header_key: authorization
              header_prefix: "Bearer "
        credentials_factory_name: envoy.grpc_credentials.file_based_metadata
        # The listener's certificate names the Service, whatever is dialled.
        channel_args:
          args:
            grpc.ssl_target_name_override: {string_value: {{ .serverName | quote }}}
    {{- else }}
    - envoy_grpc: {cluster_name: xds-grpc}
    {{- end }}
    set_node_on_first_message_only: true
  cds_config: {ads: {}, resource_api_version: V3, initial_fetch_timeout: 0s}
  lds_config: {ads: {}, resource_api_version: V3, initial_fetch_timeout: 0s}
# Istio's stats tags, reading cluster names up to alt_stat_name's `;`, and
# the cluster name also as envoy_cluster_name (src/bootstrap.rs says why).
stats_config:
  use_all_default_tags: false
  stats_tags:
  - {tag_name: cluster_name, regex: '^cluster\.(((?:[^;]*(?=;\.)|.+?(?:\..+?\.svc\.cluster\.local)?));?\.)'}
  - {tag_name: envoy.cluster_name, regex: '^cluster\.()((?:[^;]*(?=;\.)|.+?(?:\..+?\.svc\.cluster\.local)?));?\.'}
  - {tag_name: tcp_prefix, regex: '^tcp\.((.*?)\.)\w+?$'}
  - {tag_name: response_code, regex: '_rq(_(\d{3}))$'}
  - {tag_name: response_code_class, regex: '_rq(_(\dxx))$'}
  - {tag_name: http_conn_manager_listener_prefix, regex: '^listener(?=\.).*?\.http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)'}
  - {tag_name: http_conn_manager_prefix, regex: '^http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)'}
  - {tag_name: listener_address, regex: '^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)'}
  - {tag_name: mongo_prefix, regex: '^mongo\.(.+?)\.(collection|cmd|cx_|op_|delays_|decoding_)(.*?)$'}
  - {tag_name: cache, regex: '(cache\.(.+?)\.)'}
  - {tag_name: component, regex: '(component\.(.+?)\.)'}
  - {tag_name: tag, regex: '(tag\.(.+?);\.)'}
  - {tag_name: wasm_filter, regex: '(wasm_filter\.(.+?)\.)'}
  - {tag_name: authz_enforce_result, regex: 'rbac(\.(allowed|denied))'}
  - {tag_name: authz_dry_run_action, regex: '(\.istio_dry_run_(allow|deny)_)'}
  - {tag_name: authz_dry_run_result, regex: '(\.shadow_(allowed|denied))'}
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
  - name: prometheus_stats
    type: STATIC
    connect_timeout: 0.250s
    load_assignment:
      cluster_name: prometheus_stats
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {address: 127.0.0.1, port_value: 15000}
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
  - name: prometheus
    address:
      socket_address: {address: 0.0.0.0, port_value: 15090}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: stats
          route_config:
            virtual_hosts:
            - name: backend
              domains: ["*"]
              routes:
              - match: {prefix: /stats/prometheus}
                route: {cluster: prometheus_stats}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
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

{{- define "shmesh.webhookSecret" -}}
{{- .Values.webhook.secretName | default (printf "%s-webhook-tls" (include "shmesh.fullname" .)) -}}
{{- end -}}
