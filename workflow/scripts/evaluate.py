from merge2mix import jobs
from merge2mix.summary import summarize

jobs.run(
    summarize, snakemake.log[0],
    base_dir=snakemake.params.base_dir, best_json=snakemake.input.best,
    checkpoints=dict(zip(snakemake.params.candidates, snakemake.input.checkpoints)),
    deploy_weights=snakemake.input.deploy_weights, deploy_json=snakemake.input.deploy_record,
    test_path=snakemake.input.test, task=snakemake.params.task, target=snakemake.params.target,
    batch_size=snakemake.params.batch_size, device=snakemake.params.device, threads=snakemake.threads,
    out_json=snakemake.output.summary, out_md=snakemake.output.markdown,
    heads=jobs.heads(snakemake.input, [snakemake.params.target]), operator=snakemake.params.operator,
)
