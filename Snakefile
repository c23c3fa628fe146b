# merge2mix: Merge to Mix (arXiv 2505.16066) as a workflow.
#   config -> prepare_data -> init_model -> finetune (one per candidate) -> merge_eval (one per mask)
#          -> select_mixture -> deploy -> evaluate
#   evidence: mixture_finetune (all_data; every mask with oracle: true), single_scores -> methods, correlation
#   report_text: the report opens on the answer (summary + methods table)
#   weights (optional): weight_design -> weight_eval (one per vector) / weight_round -> deploy_weighted -> mixture
# Parse time stays light: nothing here imports torch.
from snakemake.utils import min_version

min_version("9.0")


# config.yaml is the embedded default. A --configfile replaces it rather than being merged into it
# (Snakemake's default is a recursive merge, which would mix the default's datasets into yours).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/scoring.smk"
include: "rules/data.smk"
include: "rules/finetune.smk"
include: "rules/merge.smk"
include: "rules/select.smk"
include: "rules/deploy.smk"
include: "rules/evidence.smk"
include: "rules/weights.smk"


report: report_description()


rule all:
    default_target: True
    input:
        final_outputs(),
