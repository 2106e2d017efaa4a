"""`python -m pipeline_runner <extract|transform|load>`: one stage, as `lineage-hub stage`."""

from pipeline_runner.stage_entry import stage_process

stage_process()
