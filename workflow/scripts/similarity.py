from merge2mix import jobs
from merge2mix.baselines import similarities

jobs.run(
    similarities, snakemake.log[0], job=jobs.context(snakemake.params, snakemake.threads, snakemake.input),
    train_paths=dict(zip(snakemake.params.candidates, snakemake.input.trains)), target_val=snakemake.input.val,
    max_examples=snakemake.params.max_examples, out_csv=snakemake.output[0],
)
