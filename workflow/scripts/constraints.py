from merge2mix import jobs
from merge2mix.constraints import check_data

jobs.run(
    check_data, snakemake.log[0],
    c=snakemake.params.constraints, candidates=snakemake.params.candidates,
    meta_paths=list(snakemake.input.metas), out_json=snakemake.output[0],
)
