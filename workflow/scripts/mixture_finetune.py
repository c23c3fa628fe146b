from merge2mix import jobs
from merge2mix.io import read_json
from merge2mix.masks import parse_key
from merge2mix.oracle import mixture_scores

names = parse_key(snakemake.wildcards.mask)
jobs.run(
    mixture_scores, snakemake.log[0], job=jobs.context(snakemake.params, snakemake.threads, snakemake.input),
    mask=snakemake.wildcards.mask, train_paths={n: snakemake.input[f"train_{n}"] for n in names},
    single_checkpoint=snakemake.input.get("single"), splits={"val": snakemake.input.val, "test": snakemake.input.test},
    work_dir=snakemake.params.work_dir, out_json=snakemake.output[0],
    data_meta={n: read_json(snakemake.input[f"meta_{n}"])["content_sha256"] for n in names},
)
