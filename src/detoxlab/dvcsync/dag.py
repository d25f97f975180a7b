"""Every job of the Snakemake DAG for a set of configs, in topological order, as plain data.

The DAG is built with ``forceall`` so that the result does not depend on what is already on disk.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Job:
    rule: str
    wildcards: dict[str, str]
    inputs: list[str]
    outputs: list[str]
    directories: list[str]  # the outputs declared as directory()
    benchmark: str | None
    params_json: str | None  # the ``cfg`` param: JSON of the config keys the step reads
    snakefile: str  # the file that defines the rule, relative to the workdir
    input_items: list[str]  # names and positional indices of the rule's input items
    same_rule_upstream: bool  # an input comes from another job of the same rule


@dataclass
class Dag:
    jobs: list[Job]
    config: dict  # the validated config the workflow ran with
    globals: dict = field(repr=False)  # the workflow's module globals (DVC_METRICS, DVC_PLOTS...)


def read(configfiles: list[str], snakefile: str = "Snakefile", workdir: str = ".") -> Dag:
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import OutputSettings, Quietness

    root = Path(workdir).resolve()
    quiet = OutputSettings(quiet={Quietness.ALL})
    # Snakemake's own output (progress, config warnings) is not part of what callers print.
    snakemake_log = logging.getLogger("snakemake.logging")
    propagate = snakemake_log.propagate
    snakemake_log.propagate = False
    try:
        with SnakemakeApi(quiet) as api, contextlib.redirect_stdout(io.StringIO()):
            return _read(api, configfiles, snakefile, root)
    finally:
        snakemake_log.propagate = propagate


def _read(api, configfiles: list[str], snakefile: str, root: Path) -> Dag:
    from snakemake.settings.types import ConfigSettings, DAGSettings, ResourceSettings

    wf_api = api.workflow(resource_settings=ResourceSettings(cores=1),
                          config_settings=ConfigSettings(configfiles=[Path(c) for c in configfiles]),
                          snakefile=Path(snakefile), workdir=root)
    workflow = wf_api.dag(DAGSettings(forceall=True)).workflow_api._workflow
    workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True)
    workflow._build_dag()
    dag = workflow.dag
    jobs = []
    for level_jobs in dag.toposorted():
        for job in sorted(level_jobs, key=lambda j: (j.rule.name, sorted(j.wildcards.items()))):
            if not job.output:  # target rules such as `all` produce nothing
                continue
            same = any(dep.rule is job.rule for dep in dag.dependencies[job])
            jobs.append(_job(job, root, same))
    return Dag(jobs=jobs, config=dict(workflow.config), globals=dict(workflow.globals))


def _job(job, root: Path, same_rule_upstream: bool) -> Job:
    rule = job.rule
    names = list(rule.input._names)
    params = dict(job.params.items())
    # wildcards in the order they appear in the first output's path, so a stage name reads like that path
    wildcards = {k: str(v) for k, v in job.wildcards.items()}
    order = [k for k in dict.fromkeys(re.findall(r"{(\w+)", str(rule.output[0]))) if k in wildcards]
    order += sorted(k for k in wildcards if k not in order)
    return Job(rule=rule.name, wildcards={k: wildcards[k] for k in order},
               inputs=sorted(dict.fromkeys(str(f) for f in job.input)),
               outputs=[str(f) for f in job.output],
               directories=[str(f) for f in job.output if f.is_directory],
               benchmark=str(job.benchmark) if job.benchmark else None,
               params_json=params.get("cfg"),
               snakefile=str(Path(rule.snakefile).resolve().relative_to(root)),
               input_items=names + [str(i) for i in range(len(rule.input))],
               same_rule_upstream=same_rule_upstream)
