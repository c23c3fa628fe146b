from merge2mix import jobs
from merge2mix.weight_search import design_step

jobs.run(
    design_step, snakemake.log[0], masks_csv=snakemake.input.masks, top=snakemake.params.top,
    per_mask=snakemake.params.per_mask, seed=snakemake.params.seed, concentration=snakemake.params.concentration,
    out_json=snakemake.output[0],
)
