import json

from merge2mix import jobs
from merge2mix.masks import parse_key
from merge2mix.oracle import mixture_scores

names = parse_key(snakemake.wildcards.mask)
metas = {}
for n in names:
    with open(snakemake.input[f"meta_{n}"]) as fh:
        metas[n] = json.load(fh)["content_sha256"]
jobs.run(
    mixture_scores, snakemake.log[0],
    mask=snakemake.wildcards.mask, base_dir=snakemake.params.base_dir,
    train_paths={n: snakemake.input[f"train_{n}"] for n in names},
    single_checkpoint=snakemake.input.get("single"), val_path=snakemake.input.val, test_path=snakemake.input.test,
    hp=snakemake.params.hp, task=snakemake.params.task, seed=snakemake.params.seed, device=snakemake.params.device,
    threads=snakemake.threads, batch_size=snakemake.params.batch_size, work_dir=snakemake.params.work_dir,
    out_json=snakemake.output[0], data_meta=metas, checkpoint_every=snakemake.params.checkpoint_every,
    heads=jobs.heads(snakemake.input, names), target_head=jobs.target_head(snakemake.input, names),
)
