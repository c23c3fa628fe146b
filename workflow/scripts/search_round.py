from merge2mix import jobs
from merge2mix.search import round_step

jobs.run(
    round_step, snakemake.log[0],
    result_paths=list(snakemake.input.results), previous=snakemake.input.get("previous"),
    candidates=snakemake.params.candidates, metric=snakemake.params.metric,
    settings={**snakemake.params.settings, "max_masks": snakemake.params.max_masks, "seed": snakemake.params.seed}, c=snakemake.params.constraints, constraints_path=snakemake.input.get("constraints"),
    out_json=snakemake.output[0],
)
