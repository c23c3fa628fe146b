from merge2mix import jobs
from merge2mix.calibration import calibrate

jobs.run(
    calibrate, snakemake.log[0],
    merged_paths=list(snakemake.input.merged), finetuned_paths=list(snakemake.input.finetuned),
    metric=snakemake.params.metric, extra=snakemake.params.extra, out_json=snakemake.output[0],
)
