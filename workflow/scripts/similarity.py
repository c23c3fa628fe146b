from merge2mix import jobs
from merge2mix.baselines import similarities

jobs.run(
    similarities, snakemake.log[0],
    base_dir=snakemake.params.base_dir, train_paths=dict(zip(snakemake.params.candidates, snakemake.input.trains)),
    target_val=snakemake.input.val, task=snakemake.params.task, max_examples=snakemake.params.max_examples,
    batch_size=snakemake.params.batch_size, device=snakemake.params.device, threads=snakemake.threads,
    seed=snakemake.params.seed, out_csv=snakemake.output[0],
)
