from merge2mix import jobs
from merge2mix.weight_search import round_step

jobs.run(
    round_step, snakemake.log[0], r=int(snakemake.wildcards.r), result_paths=list(snakemake.input.results),
    design_path=snakemake.input.design, metric=snakemake.params.metric, settings=snakemake.params.settings,
    c=snakemake.params.constraints, out_json=snakemake.output[0], constraints_path=snakemake.input.get("constraints"),
)
