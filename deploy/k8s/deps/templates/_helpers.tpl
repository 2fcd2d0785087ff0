{{- /* Shared helpers of the deps chart. Call with (dict "root" $ "name" "<component>" "image" "<image ref>"). */}}
{{- define "deps.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end }}

{{- define "deps.labels" -}}
{{ include "deps.selectorLabels" . }}
app.kubernetes.io/version: {{ .image | splitList ":" | last | quote }}
app.kubernetes.io/part-of: {{ .root.Chart.Name }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end }}
