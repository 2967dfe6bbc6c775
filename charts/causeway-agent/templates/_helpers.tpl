{{- define "causeway-agent.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "causeway-agent.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "causeway-agent.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "causeway-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: causeway
{{- end -}}

{{- define "causeway-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "causeway-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "causeway-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "causeway-agent.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "causeway-agent.tokenSecret" -}}
{{- default (printf "%s-token" (include "causeway-agent.fullname" .)) .Values.token.existingSecret -}}
{{- end -}}

{{- define "causeway-agent.clusterName" -}}
{{- default .Release.Name .Values.clusterName -}}
{{- end -}}
