{{/* Names and labels. */}}
{{- define "fairlead.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fairlead.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "fairlead.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "fairlead.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "fairlead.webhookName" -}}
{{ include "fairlead.fullname" . }}-webhook
{{- end -}}

{{/* The port of an IP:PORT option value. */}}
{{- define "fairlead.port" -}}
{{ regexReplaceAll "^.*:" (toString .) "" }}
{{- end -}}

{{/*
fairlead's options as the sidecar's (or proxy's) environment: config, with the file options
of the Secrets below, then `overrides` (a dict, for the shared proxy's addresses).
*/}}
{{- define "fairlead.options" -}}
{{- $v := .root.Values -}}
{{- $o := deepCopy $v.config -}}
{{- with $v.upstreamTls.secret -}}
{{- if .name -}}
{{- $_ := set $o "upstream_tls" (ternary $o.upstream_tls true (kindIs "bool" $o.upstream_tls)) -}}
{{- $_ := set $o "upstream_tls_ca_file" ($o.upstream_tls_ca_file | default (printf "/etc/fairlead/upstream-tls/%s" .caKey)) -}}
{{- if .certKey -}}
{{- $_ := set $o "upstream_tls_cert_file" ($o.upstream_tls_cert_file | default (printf "/etc/fairlead/upstream-tls/%s" .certKey)) -}}
{{- $_ := set $o "upstream_tls_key_file" ($o.upstream_tls_key_file | default (printf "/etc/fairlead/upstream-tls/%s" .keyKey)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- with $v.listenerTls.secret -}}
{{- if .name -}}
{{- $_ := set $o "listener_tls_cert_file" ($o.listener_tls_cert_file | default (printf "/etc/fairlead/listener-tls/%s" .certKey)) -}}
{{- $_ := set $o "listener_tls_key_file" ($o.listener_tls_key_file | default (printf "/etc/fairlead/listener-tls/%s" .keyKey)) -}}
{{- if .clientCaKey -}}
{{- $_ := set $o "listener_tls_client_ca_file" ($o.listener_tls_client_ca_file | default (printf "/etc/fairlead/listener-tls/%s" .clientCaKey)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $v.sasl.passwordSecret.name -}}
{{- $_ := set $o "sasl_password_file" ($o.sasl_password_file | default "/etc/fairlead/sasl/password") -}}
{{- end -}}
{{- if $v.sasl.oauthClientSecret.name -}}
{{- $_ := set $o "sasl_oauthbearer_client_secret_file" ($o.sasl_oauthbearer_client_secret_file | default "/etc/fairlead/sasl-oauth/client-secret") -}}
{{- end -}}
{{- range $k, $val := (.overrides | default dict) -}}
{{- $_ := set $o $k $val -}}
{{- end -}}
{{- range $k := keys $o | sortAlpha -}}
{{- $val := get $o $k -}}
{{- if not (kindIs "invalid" $val) }}
- name: FAIRLEAD_{{ upper $k }}
  {{- /* YAML numbers arrive as float64: 104857600 would print as 1.048576e+08. */}}
  value: {{ ternary ($val | int64 | toString) ($val | toString) (kindIs "float64" $val) | quote }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Volumes for the Secrets fairlead reads. */}}
{{- define "fairlead.secretVolumes" -}}
{{- $v := .Values -}}
{{- if $v.upstreamTls.secret.name }}
- name: fairlead-upstream-tls
  secret:
    secretName: {{ $v.upstreamTls.secret.name }}
{{- end }}
{{- if $v.listenerTls.secret.name }}
- name: fairlead-listener-tls
  secret:
    secretName: {{ $v.listenerTls.secret.name }}
{{- end }}
{{- if $v.sasl.passwordSecret.name }}
- name: fairlead-sasl
  secret:
    secretName: {{ $v.sasl.passwordSecret.name }}
    items:
      - key: {{ $v.sasl.passwordSecret.key }}
        path: password
{{- end }}
{{- if $v.sasl.oauthClientSecret.name }}
- name: fairlead-sasl-oauth
  secret:
    secretName: {{ $v.sasl.oauthClientSecret.name }}
    items:
      - key: {{ $v.sasl.oauthClientSecret.key }}
        path: client-secret
{{- end }}
{{- end -}}

{{- define "fairlead.secretMounts" -}}
{{- $v := .Values -}}
{{- if $v.upstreamTls.secret.name }}
- name: fairlead-upstream-tls
  mountPath: /etc/fairlead/upstream-tls
  readOnly: true
{{- end }}
{{- if $v.listenerTls.secret.name }}
- name: fairlead-listener-tls
  mountPath: /etc/fairlead/listener-tls
  readOnly: true
{{- end }}
{{- if $v.sasl.passwordSecret.name }}
- name: fairlead-sasl
  mountPath: /etc/fairlead/sasl
  readOnly: true
{{- end }}
{{- if $v.sasl.oauthClientSecret.name }}
- name: fairlead-sasl-oauth
  mountPath: /etc/fairlead/sasl-oauth
  readOnly: true
{{- end }}
{{- end -}}

{{/* Probes on the admin port: one meaning each (README.md, "Probes"). */}}
{{- define "fairlead.probes" -}}
{{- $p := .probes -}}
startupProbe:
  httpGet:
    path: /startupz
    port: {{ .port }}
  periodSeconds: {{ $p.startupProbe.periodSeconds }}
  failureThreshold: {{ $p.startupProbe.failureThreshold }}
  timeoutSeconds: {{ $p.startupProbe.timeoutSeconds }}
livenessProbe:
  httpGet:
    path: /livez
    port: {{ .port }}
  periodSeconds: {{ $p.livenessProbe.periodSeconds }}
  failureThreshold: {{ $p.livenessProbe.failureThreshold }}
  timeoutSeconds: {{ $p.livenessProbe.timeoutSeconds }}
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ .port }}
  periodSeconds: {{ $p.readinessProbe.periodSeconds }}
  failureThreshold: {{ $p.readinessProbe.failureThreshold }}
  timeoutSeconds: {{ $p.readinessProbe.timeoutSeconds }}
{{- end -}}

{{/* The injected container. */}}
{{- define "fairlead.sidecar" -}}
{{- $adminPort := include "fairlead.port" .Values.config.admin | int -}}
name: {{ .Values.sidecar.name }}
image: {{ include "fairlead.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
restartPolicy: Always
env:
{{- include "fairlead.options" (dict "root" .) | indent 2 }}
ports:
  - name: fairlead-admin
    containerPort: {{ $adminPort }}
    protocol: TCP
{{ include "fairlead.probes" (dict "probes" .Values.sidecar "port" $adminPort) }}
resources:
{{- toYaml .Values.sidecar.resources | nindent 2 }}
securityContext:
{{- toYaml .Values.sidecar.securityContext | nindent 2 }}
{{- with include "fairlead.secretMounts" . }}
volumeMounts:
{{- . | indent 2 }}
{{- end }}
{{- end -}}
