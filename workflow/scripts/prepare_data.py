from merge2mix import hub

hub.offline_for_compute_job()  # before datasets is imported: fetch_dataset put hf sources in the cache

from merge2mix import jobs  # noqa: E402
from merge2mix.config import MODALITY  # noqa: E402
from merge2mix.data.prepare import prepare_dataset  # noqa: E402

jobs.run(
    prepare_dataset, snakemake.log[0],
    name=snakemake.wildcards.name, ds=snakemake.params.dataset, labels=snakemake.params.labels,
    splits=snakemake.params.splits, seed=snakemake.params.seed, out=dict(snakemake.output),
    # From the config, not a param: a new param would rerun every existing run's data (and all after it).
    modality=MODALITY[snakemake.config.get("task", {}).get("type", "text_classification")],
)
