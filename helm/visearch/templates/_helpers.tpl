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

{{/* Kafka input topic of a stage (shared/transport.py stage_topics): the output of the previous stage of
     pipelineStages in chain order, or images for the first; e.g. ocr <- embedded with the default chain. */}}
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

{{/* The service components, in chain order then ranking (space-separated; splitList " " to range). */}}
{{- define "visearch.components" -}}
detection embedding ocr classification indexer ranking profiles
{{- end }}

{{/* "true" when the component is a stage of pipelineStages: (dict "root" $ "component" "ocr"). */}}
{{- define "visearch.inPipeline" -}}
{{- if has .component (splitList "," (.root.Values.pipelineStages | nospace)) }}true{{ end }}
{{- end }}

{{/* "true" when a KEDA ScaledObject scales the component (enabled, and a stage of the chain, so that
     it has an input topic); the CPU HPA and the fixed replica count then step aside. */}}
{{- define "visearch.kedaEnabled" -}}
{{- $svc := index .root.Values.services .component }}
{{- if and $svc.enabled (hasKey $svc "keda") $svc.keda.enabled (include "visearch.inPipeline" .) }}true{{ end }}
{{- end }}

{{/* gRPC target of a peer for VISEARCH_<PEER>_ADDR, or "" when it is disabled: (dict "root" $ "component"
     "detection"). grpc.headlessPeers: dns:///<fullname>-<peer>-headless:<port>, every ready pod of the peer
     (callers balance per call, round_robin); else the ClusterIP Service's host:port (one pod per connection). */}}
{{- define "visearch.addr" -}}
{{- $svc := index .root.Values.services .component }}
{{- if $svc.enabled }}
{{- if .root.Values.grpc.headlessPeers }}
{{- printf "dns:///%s-%s-headless:%d" (include "visearch.fullname" .root) .component (int $svc.grpcPort) }}
{{- else }}
{{- printf "%s-%s:%d" (include "visearch.fullname" .root) .component (int $svc.grpcPort) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The model services whose process both serves a gRPC API and runs a Kafka stage. */}}
{{- define "visearch.modelServices" -}}
detection embedding ocr classification
{{- end }}

{{/* "true" when a model service runs as two Deployments: <name> serving its gRPC API (VISEARCH_SERVICE_ROLE=grpc)
     and <name>-worker consuming its stage's topic (role worker): enabled, services.<name>.worker.enabled, and a
     stage of pipelineStages. (dict "root" $ "component" "embedding") */}}
{{- define "visearch.splitWorker" -}}
{{- $svc := index .root.Values.services .component }}
{{- if and $svc.enabled (has .component (splitList " " (include "visearch.modelServices" .root))) (hasKey $svc "worker") $svc.worker.enabled (include "visearch.inPipeline" .) }}true{{ end }}
{{- end }}

{{/* The Deployments of the enabled services, as a YAML list (fromYamlArray): name (Deployment, labels'
     component), component (the service: values, command, ports), worker (values from services.<component>.worker
     over the service's own), role (VISEARCH_SERVICE_ROLE) and keda (a ScaledObject scales it, not the HPA). A
     split model service's stage (and its KEDA scaling) belongs to <component>-worker. */}}
{{- define "visearch.workloads" -}}
{{- range $component := splitList " " (include "visearch.components" .) }}
{{- $ctx := dict "root" $ "component" $component }}
{{- if (index $.Values.services $component).enabled }}
{{- $split := include "visearch.splitWorker" $ctx }}
{{- $keda := include "visearch.kedaEnabled" $ctx }}
- {name: {{ $component }}, component: {{ $component }}, worker: false, role: {{ if $split }}grpc{{ else }}all{{ end }}, keda: {{ if and $keda (not $split) }}true{{ else }}false{{ end }}}
{{- if $split }}
- {name: {{ $component }}-worker, component: {{ $component }}, worker: true, role: worker, keda: {{ if $keda }}true{{ else }}false{{ end }}}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Values of a workload (an item of visearch.workloads): the service's, with services.<component>.worker's
     over them for a worker (two levels deep: worker.autoscaling.enabled=false keeps the service's minReplicas...;
     sprig's merge would not let false or 0 win), as YAML (fromYaml). (dict "root" $ "workload" $w) */}}
{{- define "visearch.workloadValues" -}}
{{- $svc := index .root.Values.services .workload.component }}
{{- $values := deepCopy (omit $svc "worker") }}
{{- if .workload.worker }}
{{- range $key, $value := omit $svc.worker "enabled" }}
{{- if kindIs "map" $value }}
{{- $inner := deepCopy (get $values $key | default dict) }}
{{- range $k, $v := $value }}{{ $_ := set $inner $k $v }}{{ end }}
{{- $_ := set $values $key $inner }}
{{- else }}
{{- $_ := set $values $key $value }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $values }}
{{- end }}

{{/* "true" when the component is called over gRPC by another that is deployed (a callee in visearch.peers): it
     gets a headless Service for the callers' round_robin. */}}
{{- define "visearch.isPeer" -}}
{{- range $caller, $callees := include "visearch.peers" .root | fromYaml }}{{ if and (has $.component $callees) (include "visearch.callerEnabled" (dict "root" $.root "component" $caller)) }}true{{ end }}{{ end }}
{{- end }}

{{/* Fail the render when a stage of pipelineStages has no enabled service (its topic would never drain). */}}
{{- define "visearch.validatePipeline" -}}
{{- range $stage := splitList "," (.Values.pipelineStages | nospace) }}
{{- $svc := index $.Values.services $stage | default dict }}
{{- if not $svc.enabled }}
{{- fail (printf "pipelineStages lists %q but services.%s.enabled is false" $stage $stage) }}
{{- end }}
{{- end }}
{{- end }}

{{/* Who calls whom over gRPC (caller: [callees]), as YAML: the Deployments set VISEARCH_<CALLEE>_ADDR
     from it and the NetworkPolicies admit the callers. */}}
{{- define "visearch.peers" -}}
ranking: [embedding, detection, classification, ocr]
classification: [detection, ocr]
gateway: [ranking, detection, ocr, classification]
{{- end }}

{{/* "true" when a caller of visearch.peers is deployed: services.<name>.enabled, or gateway.enabled for the HTTP
     gateway (not a service: templates/gateway.yaml). (dict "root" $ "component" "gateway") */}}
{{- define "visearch.callerEnabled" -}}
{{- if eq .component "gateway" }}{{ if .root.Values.gateway.enabled }}true{{ end }}
{{- else if (index .root.Values.services .component | default dict).enabled }}true{{ end }}
{{- end }}

{{/* Container env of the fetch CA bundle, gRPC TLS and accepted tokens (security.*, config.fetch.caBundle), as a
     YAML list, empty when all are off: servers serve tls.crt/tls.key, calls to peers verify them with ca.crt;
     mutual: servers require a client certificate from ca.crt and calls present tls.crt/tls.key. */}}
{{- define "visearch.securityEnv" -}}
{{- $sec := .Values.security }}
{{- $tlsDir := include "visearch.tlsDir" . }}
{{- if .Values.config.fetch.caBundle.configMap }}
- name: VISEARCH_IMAGE_FETCH_CA_FILE
  value: {{ printf "%s/ca.crt" (include "visearch.fetchCaDir" .) | quote }}
{{- end }}
{{- if $sec.tls.enabled }}
- name: VISEARCH_SECURITY_TLS_CERT_FILE
  value: {{ printf "%s/tls.crt" $tlsDir | quote }}
- name: VISEARCH_SECURITY_TLS_KEY_FILE
  value: {{ printf "%s/tls.key" $tlsDir | quote }}
- name: VISEARCH_SECURITY_TLS_CA_FILE
  value: {{ printf "%s/ca.crt" $tlsDir | quote }}
{{- if $sec.tls.mutual }}
- name: VISEARCH_SECURITY_TLS_CLIENT_CA_FILE
  value: {{ printf "%s/ca.crt" $tlsDir | quote }}
- name: VISEARCH_SECURITY_TLS_CLIENT_CERT_FILE
  value: {{ printf "%s/tls.crt" $tlsDir | quote }}
- name: VISEARCH_SECURITY_TLS_CLIENT_KEY_FILE
  value: {{ printf "%s/tls.key" $tlsDir | quote }}
{{- end }}
{{- end }}
{{- if $sec.auth.enabled }}
- name: VISEARCH_SECURITY_AUTH_TOKENS_FILE
  value: {{ printf "%s/tokens" (include "visearch.authDir" .) | quote }}
{{- end }}
{{- end }}

{{/* The volumeMounts of visearch.securityEnv's files (a YAML list, empty when all are off). */}}
{{- define "visearch.securityVolumeMounts" -}}
{{- if .Values.security.tls.enabled }}
- name: tls
  mountPath: {{ include "visearch.tlsDir" . }}
  readOnly: true
{{- end }}
{{- if .Values.security.auth.enabled }}
- name: auth-tokens
  mountPath: {{ include "visearch.authDir" . }}
  readOnly: true
{{- end }}
{{- if .Values.config.fetch.caBundle.configMap }}
- name: fetch-ca
  mountPath: {{ include "visearch.fetchCaDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/* The volumes of visearch.securityVolumeMounts: whole-directory mounts (no subPath), so rotated Secrets reach
     the files, which the services re-read when they change. A missing key fails the pod's start with a clear
     event. */}}
{{- define "visearch.securityVolumes" -}}
{{- $sec := .Values.security }}
{{- $caBundle := .Values.config.fetch.caBundle }}
{{- if $sec.tls.enabled }}
- name: tls
  secret:
    secretName: {{ $sec.tls.existingSecret }}
    defaultMode: 0440
    items:
      - {key: tls.crt, path: tls.crt}
      - {key: tls.key, path: tls.key}
      - {key: ca.crt, path: ca.crt}
{{- end }}
{{- if $sec.auth.enabled }}
- name: auth-tokens
  secret:
    secretName: {{ $sec.auth.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ $sec.auth.existingSecretKey }}
        path: tokens
{{- end }}
{{- if $caBundle.configMap }}
- name: fetch-ca
  configMap:
    name: {{ $caBundle.configMap }}
    items:
      - key: {{ $caBundle.key }}
        path: ca.crt
{{- end }}
{{- end }}

{{/* A CPU HorizontalPodAutoscaler of Deployment <fullname>-<name>: (dict "root" $ "name" "ranking" "autoscaling"
     $svc.autoscaling). */}}
{{- define "visearch.hpa" -}}
{{- $ctx := dict "root" .root "component" .name }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "visearch.fullname" .root }}-{{ .name }}
  labels:
    {{- include "visearch.componentLabels" $ctx | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "visearch.fullname" .root }}-{{ .name }}
  minReplicas: {{ .autoscaling.minReplicas }}
  maxReplicas: {{ .autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .autoscaling.targetCPUUtilizationPercentage }}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 300
      policies:
        - type: Pods
          value: 1
          periodSeconds: 60
{{- end }}

{{/* The PodDisruptionBudget of Deployment <fullname>-<name>: (dict "root" $ "name" "ranking" "pdb" $svc.pdb). */}}
{{- define "visearch.pdb" -}}
{{- $ctx := dict "root" .root "component" .name }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "visearch.fullname" .root }}-{{ .name }}
  labels:
    {{- include "visearch.componentLabels" $ctx | nindent 4 }}
spec:
  maxUnavailable: {{ .pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "visearch.componentSelectorLabels" $ctx | nindent 6 }}
{{- end }}

{{/* Where the security Secrets (and the image-fetch CA bundle) are mounted in the service containers. */}}
{{- define "visearch.tlsDir" -}}/etc/visearch/tls{{- end }}
{{- define "visearch.authDir" -}}/etc/visearch/auth{{- end }}
{{- define "visearch.fetchCaDir" -}}/etc/visearch/fetch-ca{{- end }}
{{- define "visearch.rankersDir" -}}/etc/visearch/rankers{{- end }}

{{/* Full gRPC service name of a component's API, e.g. ocr -> visearch.v1.OcrService. */}}
{{- define "visearch.grpcService" -}}
{{- if eq . "ranking" }}visearch.v1.SearchService{{ else }}{{ printf "visearch.v1.%sService" (title .) }}{{ end }}
{{- end }}

{{/* Fail the render on security values that cannot work (checked before anything is deployed). */}}
{{- define "visearch.validateSecurity" -}}
{{- $sec := .Values.security }}
{{- if $sec.tls.enabled }}
{{- $_ := required "security.tls.enabled needs security.tls.existingSecret: a kubernetes.io/tls Secret with tls.crt, tls.key and ca.crt" $sec.tls.existingSecret }}
{{- else if $sec.tls.mutual }}
{{- fail "security.tls.mutual needs security.tls.enabled (and security.tls.existingSecret)" }}
{{- end }}
{{- if $sec.auth.enabled }}
{{- $_ := required "security.auth.enabled needs security.auth.existingSecret: a Secret whose key (security.auth.existingSecretKey, default tokens) holds id:token lines" $sec.auth.existingSecret }}
{{- /* A caller whose peer's API needs a token must send one. */}}
{{- $protected := splitList "," ($sec.auth.services | nospace) }}
{{- if not $sec.auth.clientTokenSecret.name }}
{{- range $caller, $callees := include "visearch.peers" . | fromYaml }}
{{- /* the gateway sends its HTTP caller's token, never one of its own */}}
{{- if and (ne $caller "gateway") (include "visearch.callerEnabled" (dict "root" $ "component" $caller)) }}
{{- range $callee := $callees }}
{{- $name := include "visearch.grpcService" $callee }}
{{- if and (index $.Values.services $callee).enabled (or (has "*" $protected) (has $name $protected)) }}
{{- fail (printf "security.auth.services covers %s, which %s calls: set security.auth.clientTokenSecret to a Secret with a token that security.auth.existingSecret accepts" $name $caller) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
