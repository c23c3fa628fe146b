from merge2mix import jobs
from merge2mix.data.prepare import prepare_dataset

jobs.run(
    prepare_dataset, snakemake.log[0],
    name=snakemake.wildcards.name, ds=snakemake.params.dataset, labels=snakemake.params.labels,
    splits=snakemake.params.splits, seed=snakemake.params.seed, out=dict(snakemake.output),
)
