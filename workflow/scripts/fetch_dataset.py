from merge2mix import jobs
from merge2mix.hub import fetch_dataset

jobs.run(fetch_dataset, snakemake.log[0], name=snakemake.wildcards.name, spec=snakemake.params.spec,
         out_json=snakemake.output[0])
