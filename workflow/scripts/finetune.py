from merge2mix import jobs
from merge2mix.io import read_json
from merge2mix.train import finetune_stored

meta = read_json(snakemake.input.meta)
jobs.run(
    finetune_stored, snakemake.log[0], store_dir=snakemake.params.store,
    job=jobs.context(snakemake.params, snakemake.threads, snakemake.input),
    train_paths={snakemake.wildcards.name: snakemake.input.train}, out_weights=snakemake.output.weights,
    out_json=snakemake.output.record, data_meta={meta["name"]: meta["content_sha256"]},
    work_dir=snakemake.params.work_dir,
)
