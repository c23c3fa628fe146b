import json

from merge2mix import jobs
from merge2mix.train import finetune_stored

if "last" in snakemake.input.keys():  # deploy_weighted: the weight search's pick, drawn by its weights
    with open(snakemake.input.last) as fh:
        weights = json.load(fh)["weights"]
    chosen, store, budget = sorted(weights), None, snakemake.params.budget  # the store keys no weights
else:
    with open(snakemake.input.best) as fh:
        chosen = json.load(fh)["datasets"]
    weights, store, budget = None, snakemake.params.store, None
metas = {}
for path in snakemake.input.metas:
    with open(path) as fh:
        m = json.load(fh)
    metas[m["name"]] = m["content_sha256"]
trains = dict(zip(snakemake.params.candidates, snakemake.input.trains))
jobs.run(
    finetune_stored, snakemake.log[0], store_dir=store,
    base_dir=snakemake.params.base_dir, train_paths={n: trains[n] for n in chosen},
    out_weights=snakemake.output.weights, out_json=snakemake.output.record, hp=snakemake.params.hp,
    task=snakemake.params.task, seed=snakemake.params.seed, device=snakemake.params.device,
    threads=snakemake.threads, work_dir=snakemake.params.work_dir, checkpoint_every=snakemake.params.checkpoint_every,
    data_meta={n: metas[n] for n in chosen}, heads=jobs.heads(snakemake.input, chosen),
    **({"weights": weights, "budget": budget} if weights else {}),
)
