"""The lineage-hub operator: runs each PipelineRun's stages as Kubernetes Jobs.

Import name `lineagehub_operator` (the folder is `operator/`, a stdlib name).
"""
