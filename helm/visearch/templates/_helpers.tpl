{{/* Chart name, truncated to 63 characters. */}}
{{- define "visearch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name. */}}
{{- define "visearch.fullname" -}}
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

{{- define "visearch.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "visearch.labels" -}}
helm.sh/chart: {{ include "visearch.chart" . }}
app.kubernetes.io/part-of: visearch
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{- define "visearch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "visearch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component: (dict "root" $ "component" "embedding"). */}}
{{- define "visearch.componentLabels" -}}
{{ include "visearch.labels" .root }}
{{ include "visearch.componentSelectorLabels" . }}
{{- end }}

{{- define "visearch.componentSelectorLabels" -}}
{{ include "visearch.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "visearch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "visearch.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "visearch.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "visearch.milvusSecretName" -}}
{{- default (printf "%s-milvus" (include "visearch.fullname" .)) .Values.milvus.existingSecret }}
{{- end }}

{{- define "visearch.hasMilvusToken" -}}
{{- if or .Values.milvus.existingSecret .Values.milvus.token }}true{{ end }}
{{- end }}

{{/* host:port of Triton for VISEARCH_MODEL_TRITON_URL (empty: in-process onnxruntime). */}}
{{- define "visearch.tritonUrl" -}}
{{- if .Values.triton.enabled }}
{{- printf "%s-triton:%d" (include "visearch.fullname" .) (int .Values.triton.grpcPort) }}
{{- else }}
{{- .Values.triton.url }}
{{- end }}
{{- end }}

{{/* Kafka input topic of a stage with the default chain: embedding <- images, indexer <- the last output before it. */}}
{{- define "visearch.inputTopic" -}}
{{- $stages := splitList "," (.root.Values.pipelineStages | nospace) }}
{{- $order := list "detection" "embedding" "ocr" "classification" "indexer" }}
{{- $outputs := dict "detection" "detected" "embedding" "embedded" "ocr" "ocr" "classification" "classified" }}
{{- $current := "images" }}
{{- $result := "" }}
{{- range $order }}
{{- if has . $stages }}
{{- if eq . $.component }}{{ $result = $current }}{{ end }}
{{- if ne . "indexer" }}{{ $current = get $outputs . }}{{ end }}
{{- end }}
{{- end }}
{{- printf "%s.%s.v1" .root.Values.kafka.topicPrefix (default "images" $result) }}
{{- end }}

{{/* Pod/container security contexts shared by every workload. */}}
{{- define "visearch.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end }}
{{- define "visearch.securityContext" -}}
{{ toYaml .Values.securityContext }}
{{- end }}

{{/* topologySpreadConstraints for one component. */}}
{{- define "visearch.topologySpread" -}}
{{- $v := .root.Values.topologySpread }}
{{- if $v.enabled }}
topologySpreadConstraints:
{{- range (list $v.zoneKey $v.hostKey) }}
  - maxSkew: {{ $v.maxSkew }}
    topologyKey: {{ . }}
    whenUnsatisfiable: {{ $v.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "visearch.componentSelectorLabels" $ | nindent 8 }}
    matchLabelKeys: [pod-template-hash]
{{- end }}
{{- end }}
{{- end }}
