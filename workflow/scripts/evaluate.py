from merge2mix import jobs
from merge2mix.summary import summarize

jobs.run(
    summarize, snakemake.log[0], job=jobs.context(snakemake.params, snakemake.threads, snakemake.input),
    target=snakemake.params.target, best_json=snakemake.input.best,
    checkpoints=dict(zip(snakemake.params.candidates, snakemake.input.checkpoints)),
    deployed={"weights": snakemake.input.deploy_weights, "record": snakemake.input.deploy_record},
    test_path=snakemake.input.test, out_json=snakemake.output.summary, out_md=snakemake.output.markdown,
)
