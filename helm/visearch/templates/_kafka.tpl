{{/* Kafka client security (kafka.security): the environment, the mounted TLS files and KEDA's
     TriggerAuthentication of every pod that talks to Kafka. docs/operations.md#kafka-security */}}

{{- define "visearch.kafkaTlsDir" -}}/etc/visearch/kafka-tls{{- end }}

{{/* "true" with SASL_PLAINTEXT / SASL_SSL. */}}
{{- define "visearch.kafkaSasl" -}}
{{- if has .Values.kafka.security.protocol (list "SASL_PLAINTEXT" "SASL_SSL") }}true{{ end }}
{{- end }}

{{/* "true" with SSL / SASL_SSL. */}}
{{- define "visearch.kafkaTls" -}}
{{- if has .Values.kafka.security.protocol (list "SSL" "SASL_SSL") }}true{{ end }}
{{- end }}

{{/* "true" when a client certificate is configured (TLS only). */}}
{{- define "visearch.kafkaClientCert" -}}
{{- if and (include "visearch.kafkaTls" .) .Values.kafka.security.tls.certKey }}true{{ end }}
{{- end }}

{{/* "true" when TLS files are mounted (a CA bundle and/or a client certificate from Secrets). */}}
{{- define "visearch.kafkaTlsFiles" -}}
{{- if and (include "visearch.kafkaTls" .) (or .Values.kafka.security.tls.existingSecret .Values.kafka.security.tls.certKey) }}true{{ end }}
{{- end }}

{{/* "true" when a workload (an item of visearch.workloads) talks to Kafka: all but the query-only Deployments
     of split model services (role grpc), which never build a Kafka client. (dict "root" $ "workload" $w) */}}
{{- define "visearch.kafkaClient" -}}
{{- if ne .workload.role "grpc" }}true{{ end }}
{{- end }}

{{/* The container env entries of Kafka security (a YAML list; empty for PLAINTEXT). */}}
{{- define "visearch.kafkaEnv" -}}
{{- $k := .Values.kafka.security }}
{{- $dir := include "visearch.kafkaTlsDir" . }}
{{- if ne $k.protocol "PLAINTEXT" }}
- name: VISEARCH_KAFKA_SECURITY_PROTOCOL
  value: {{ $k.protocol | quote }}
{{- end }}
{{- if include "visearch.kafkaSasl" . }}
- name: VISEARCH_KAFKA_SASL_MECHANISM
  value: {{ $k.sasl.mechanism | quote }}
- name: VISEARCH_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $k.sasl.existingSecret }}
      key: {{ $k.sasl.usernameKey }}
- name: VISEARCH_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $k.sasl.existingSecret }}
      key: {{ $k.sasl.passwordKey }}
{{- end }}
{{- if include "visearch.kafkaTls" . }}
{{- if $k.tls.existingSecret }}
- name: VISEARCH_KAFKA_SSL_CAFILE
  value: {{ printf "%s/ca.crt" $dir | quote }}
{{- end }}
{{- if $k.tls.certKey }}
- name: VISEARCH_KAFKA_SSL_CERTFILE
  value: {{ printf "%s/client.crt" $dir | quote }}
- name: VISEARCH_KAFKA_SSL_KEYFILE
  value: {{ printf "%s/client.key" $dir | quote }}
{{- if $k.tls.keyPasswordKey }}
- name: VISEARCH_KAFKA_SSL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $k.tls.clientSecret | default $k.tls.existingSecret }}
      key: {{ $k.tls.keyPasswordKey }}
{{- end }}
{{- end }}
- name: VISEARCH_KAFKA_SSL_CHECK_HOSTNAME
  value: {{ $k.tls.checkHostname | quote }}
{{- end }}
{{- end }}

{{/* The volumeMounts entry of the Kafka TLS files (nothing without them). */}}
{{- define "visearch.kafkaVolumeMount" -}}
{{- if include "visearch.kafkaTlsFiles" . }}
- name: kafka-tls
  mountPath: {{ include "visearch.kafkaTlsDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/* The volumes entry: ca.crt from tls.existingSecret, client.crt / client.key from tls.clientSecret (default
     existingSecret), projected into one read-only folder. */}}
{{- define "visearch.kafkaVolume" -}}
{{- $t := .Values.kafka.security.tls }}
{{- if include "visearch.kafkaTlsFiles" . }}
- name: kafka-tls
  projected:
    defaultMode: 0440
    sources:
      {{- if $t.existingSecret }}
      - secret:
          name: {{ $t.existingSecret }}
          items:
            - {key: {{ $t.caKey }}, path: ca.crt}
      {{- end }}
      {{- if $t.certKey }}
      - secret:
          name: {{ $t.clientSecret | default $t.existingSecret }}
          items:
            - {key: {{ $t.certKey }}, path: client.crt}
            - {key: {{ $t.keyKey }}, path: client.key}
      {{- end }}
{{- end }}
{{- end }}

{{/* KEDA's Kafka trigger: its sasl mode, e.g. SCRAM-SHA-512 -> scram_sha512 ("" without SASL). */}}
{{- define "visearch.kedaKafkaSasl" -}}
{{- if include "visearch.kafkaSasl" . }}
{{- get (dict "PLAIN" "plaintext" "SCRAM-SHA-256" "scram_sha256" "SCRAM-SHA-512" "scram_sha512") .Values.kafka.security.sasl.mechanism }}
{{- end }}
{{- end }}

{{/* "true" when KEDA's Kafka trigger needs credentials or certificates from Secrets (a TriggerAuthentication). */}}
{{- define "visearch.kedaKafkaAuth" -}}
{{- if or (include "visearch.kafkaSasl" .) (include "visearch.kafkaTlsFiles" .) }}true{{ end }}
{{- end }}

{{/* Fail the render on Kafka security values that cannot work. */}}
{{- define "visearch.validateKafkaSecurity" -}}
{{- $k := .Values.kafka.security }}
{{- if include "visearch.kafkaSasl" . }}
{{- $_ := required (printf "kafka.security.protocol=%s needs kafka.security.sasl.existingSecret: a Secret with the user name (usernameKey) and password (passwordKey)" $k.protocol) $k.sasl.existingSecret }}
{{- else if $k.sasl.existingSecret }}
{{- fail (printf "kafka.security.sasl.existingSecret is set but kafka.security.protocol=%s: SASL is used only with SASL_PLAINTEXT or SASL_SSL" $k.protocol) }}
{{- end }}
{{- if include "visearch.kafkaTls" . }}
{{- if ne (empty $k.tls.certKey) (empty $k.tls.keyKey) }}
{{- fail "kafka.security.tls: a client certificate needs both certKey and keyKey" }}
{{- end }}
{{- if and $k.tls.certKey (not (or $k.tls.clientSecret $k.tls.existingSecret)) }}
{{- fail "kafka.security.tls.certKey needs kafka.security.tls.clientSecret (or existingSecret): the Secret that holds it" }}
{{- end }}
{{- if and $k.tls.keyPasswordKey (not $k.tls.certKey) }}
{{- fail "kafka.security.tls.keyPasswordKey needs a client certificate (certKey, keyKey)" }}
{{- end }}
{{- else if or $k.tls.existingSecret $k.tls.clientSecret $k.tls.certKey }}
{{- fail (printf "kafka.security.tls Secrets are set but kafka.security.protocol=%s: TLS is used only with SSL or SASL_SSL" $k.protocol) }}
{{- end }}
{{- end }}
