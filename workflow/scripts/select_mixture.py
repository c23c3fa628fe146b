from merge2mix import jobs
from merge2mix.select import select

jobs.run(
    select, snakemake.log[0],
    result_paths=list(snakemake.input.results), candidates=snakemake.params.candidates,
    out_csv=snakemake.output.table, out_best=snakemake.output.best, metric=snakemake.params.metric,
    calibration_path=snakemake.input.get("calibration"), constraints_path=snakemake.input.get("constraints"),
)
