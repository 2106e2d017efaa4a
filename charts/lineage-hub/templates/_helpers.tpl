{{/* Names ---------------------------------------------------------------------- */}}

{{- define "lh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "lh.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains (include "lh.name" .) .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "lh.name" .) | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<component>", e.g. (include "lh.component" (list . "kafka")) */}}
{{- define "lh.component" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "lh.fullname" $root) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "lh.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "lh.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: lineage-hub
{{- with $root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "lh.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "lh.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Images ------------------------------------------------------------------------ */}}

{{- define "lh.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* An upstream image from a {repository, tag} map. */}}
{{- define "lh.upstreamImage" -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}

{{- define "lh.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Pod Security "restricted" ---------------------------------------------------------
     Pod level: non-root as the given uid (and gid/fsGroup), seccomp RuntimeDefault. */}}
{{- define "lh.podSecurityContext" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: {{ . }}
  runAsGroup: {{ . }}
  fsGroup: {{ . }}
  fsGroupChangePolicy: OnRootMismatch
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{/* Container level: no privilege escalation, every capability dropped, read-only root
     (writable paths are emptyDir or persistent volumes). */}}
{{- define "lh.containerSecurityContext" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  runAsNonRoot: true
  capabilities:
    drop: ["ALL"]
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{/* Endpoints: the bundled service or the one given ------------------------------ */}}

{{- define "lh.svcHost" -}}
{{- $root := index . 0 -}}
{{- printf "%s.%s.svc" (include "lh.component" .) $root.Release.Namespace -}}
{{- end -}}

{{- define "lh.kafkaBootstrap" -}}
{{- if .Values.kafka.enabled -}}
{{- printf "%s:9092" (include "lh.svcHost" (list . "kafka")) -}}
{{- else -}}
{{- required "kafka.enabled=false needs kafka.bootstrap (host:port of your Kafka)" .Values.kafka.bootstrap -}}
{{- end -}}
{{- end -}}

{{- define "lh.marquezUrl" -}}
{{- if .Values.marquez.enabled -}}
{{- printf "http://%s:5000" (include "lh.svcHost" (list . "marquez")) -}}
{{- else -}}
{{- required "marquez.enabled=false needs marquez.url (your Marquez API base URL)" .Values.marquez.url | trimSuffix "/" -}}
{{- end -}}
{{- end -}}

{{- define "lh.jaegerUrl" -}}
{{- if .Values.jaeger.enabled -}}
{{- printf "http://%s:16686" (include "lh.svcHost" (list . "jaeger")) -}}
{{- else -}}
{{- .Values.jaeger.url | trimSuffix "/" -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the ClickHouse password (bundled) or URL (external). */}}
{{- define "lh.clickhouseSecret" -}}
{{- include "lh.component" (list . "clickhouse") -}}
{{- end -}}

{{- define "lh.clickhouseExternal" -}}
{{- if not .Values.clickhouse.enabled -}}
{{- $url := required "clickhouse.enabled=false needs clickhouse.url (clickhouse://user:password@host:9000/database)" .Values.clickhouse.url -}}
{{- if not (hasPrefix "clickhouse://" $url) -}}
{{- fail (printf "clickhouse.url must start with clickhouse:// (got %q)" $url) -}}
{{- end -}}
{{- $url -}}
{{- end -}}
{{- end -}}

{{/* A password: the value given, else the one already in the release's Secret, else
     a new random one. (root, secretName, key, given) */}}
{{- define "lh.password" -}}
{{- $root := index . 0 -}}
{{- $given := index . 3 -}}
{{- if $given -}}
{{- $given -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace (index . 1) -}}
{{- $data := default (dict) (and $existing $existing.data) -}}
{{- if hasKey $data (index . 2) -}}
{{- index $data (index . 2) | b64dec -}}
{{- else -}}
{{- randAlphaNum 24 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Small shared pod pieces ------------------------------------------------------- */}}

{{- define "lh.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* A data volume: a PVC template when persistence is on (StatefulSets), else emptyDir. */}}
{{- define "lh.volumeClaimTemplates" -}}
{{- $p := index . 1 -}}
{{- if $p.enabled }}
volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: ["ReadWriteOnce"]
      {{- with $p.storageClass }}
      storageClassName: {{ . | quote }}
      {{- end }}
      resources:
        requests:
          storage: {{ $p.size | quote }}
{{- end }}
{{- end -}}

{{- define "lh.dataVolume" -}}
{{- if not .enabled }}
- name: data
  emptyDir: {}
{{- end }}
{{- end -}}

{{/* CLICKHOUSE_URL (+ CLICKHOUSE_PASSWORD before it, for `$(VAR)` expansion) and
     CLICKHOUSE_DATABASE: the bundled server, or the URL in the Secret for yours. */}}
{{- define "lh.clickhouseEnv" -}}
{{- if .Values.clickhouse.enabled }}
- name: CLICKHOUSE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "lh.clickhouseSecret" . }}
      key: password
- name: CLICKHOUSE_URL
  value: {{ printf "clickhouse://%s:$(CLICKHOUSE_PASSWORD)@%s:9000/%s" .Values.clickhouse.username (include "lh.svcHost" (list . "clickhouse")) .Values.clickhouse.database | quote }}
{{- else }}
{{- $_ := include "lh.clickhouseExternal" . }}
- name: CLICKHOUSE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "lh.clickhouseSecret" . }}
      key: url
{{- end }}
- name: CLICKHOUSE_DATABASE
  value: {{ .Values.clickhouse.database | quote }}
{{- end -}}
