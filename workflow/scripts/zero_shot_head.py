from merge2mix import families, jobs, runtime
from merge2mix.io import read_json


def head(base_dir, meta_path, task, templates, out_path, device):
    dev = runtime.setup(1, device)
    classes = read_json(meta_path)["labels"]
    h = families.get(task["type"]).build_head(base_dir, classes, templates, out_path, dev)
    runtime.log.info("head: %d classes x %d dims from %d template(s)", h.shape[0], h.shape[1], len(templates))


jobs.run(
    head, snakemake.log[0],
    base_dir=snakemake.params.base_dir, meta_path=snakemake.input.meta, task=snakemake.params.task,
    templates=snakemake.params.templates, out_path=snakemake.output[0], device=snakemake.params.device,
)
