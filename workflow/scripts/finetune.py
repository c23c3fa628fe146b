import json

from merge2mix import jobs
from merge2mix.train import finetune_stored

with open(snakemake.input.meta) as fh:
    meta = json.load(fh)
jobs.run(
    finetune_stored, snakemake.log[0], store_dir=snakemake.params.store,
    base_dir=snakemake.params.base_dir, train_paths={snakemake.wildcards.name: snakemake.input.train},
    out_weights=snakemake.output.weights, out_json=snakemake.output.record, hp=snakemake.params.hp,
    task=snakemake.params.task, seed=snakemake.params.seed, device=snakemake.params.device,
    threads=snakemake.threads, work_dir=snakemake.params.work_dir, checkpoint_every=snakemake.params.checkpoint_every,
    data_meta={meta["name"]: meta["content_sha256"]}, heads=jobs.heads(snakemake.input, [snakemake.wildcards.name]),
)
