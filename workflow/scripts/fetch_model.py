from merge2mix import jobs
from merge2mix.hub import fetch_model

jobs.run(fetch_model, snakemake.log[0], asset=snakemake.params.asset, out_json=snakemake.output[0])
