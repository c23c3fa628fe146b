from merge2mix import jobs
from merge2mix.io import read_json
from merge2mix.train import finetune_stored

if "last" in snakemake.input.keys():  # deploy_weighted: the weight search's pick, drawn by its weights
    weights = read_json(snakemake.input.last)["weights"]
    chosen, store, options = sorted(weights), None, {"weights": weights, "budget": snakemake.params.budget}
else:  # the store keys no weights
    chosen, store, options = read_json(snakemake.input.best)["datasets"], snakemake.params.store, {}
metas = {m["name"]: m["content_sha256"] for m in map(read_json, snakemake.input.metas)}
trains = dict(zip(snakemake.params.candidates, snakemake.input.trains))
jobs.run(
    finetune_stored, snakemake.log[0], store_dir=store,
    job=jobs.context(snakemake.params, snakemake.threads, snakemake.input),
    train_paths={n: trains[n] for n in chosen}, out_weights=snakemake.output.weights, out_json=snakemake.output.record,
    data_meta={n: metas[n] for n in chosen}, work_dir=snakemake.params.work_dir, **options,
)
