# detoxlab: detoxify language models and evaluate every system (model + guide) on one protocol.
# Rules live in workflow/rules/; this file only includes them and names the final target.
# Rules marked `localrule: True` are cheap (tables, plots, selections, guide descriptors): on a cluster they run in
# the submitting Snakemake process instead of queueing as jobs.

# The embedded default, unless configs are named with --configfile (which then replace it, not merge into it).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/unidetox.smk"
include: "workflow/rules/guided.smk"
include: "workflow/rules/acf.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/export.smk"


rule all:
    default_target: True
    input:
        REPORT_OUTPUTS,
        EXPORTS,
    localrule: True
