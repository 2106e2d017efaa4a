"""`python -m pipeline_runner <extract|transform|load>`: one stage, as `lineage-hub stage`."""

from pipeline_runner.cli import stage_process

stage_process()
