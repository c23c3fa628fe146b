from merge2mix import jobs
from merge2mix.summary import mixture_summary

jobs.run(
    mixture_summary, snakemake.log[0], last_round=snakemake.input.last, design_path=snakemake.input.design,
    summary_json=snakemake.input.summary, deploy_weights=snakemake.input.deploy_weights,
    deploy_json=snakemake.input.deploy_record, base_dir=snakemake.params.base_dir, test_path=snakemake.input.test,
    task=snakemake.params.task, batch_size=snakemake.params.batch_size, device=snakemake.params.device,
    threads=snakemake.threads, out_json=snakemake.output.table, out_png=snakemake.output.plot,
    heads=jobs.heads(snakemake.input, [snakemake.params.target]),
)
