from merge2mix import jobs
from merge2mix.summary import mixture_summary

jobs.run(
    mixture_summary, snakemake.log[0], job=jobs.context(snakemake.params, snakemake.threads, snakemake.input),
    last_round=snakemake.input.last, design_path=snakemake.input.design, summary_json=snakemake.input.summary,
    deployed={"weights": snakemake.input.deploy_weights, "record": snakemake.input.deploy_record},
    test_path=snakemake.input.test, out_json=snakemake.output.table, out_png=snakemake.output.plot,
)
