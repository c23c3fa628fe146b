import os

from merge2mix import hub

hub.offline_for_compute_job()  # before transformers is imported: fetch_model put the model in the cache

from merge2mix import families, jobs, runtime  # noqa: E402


def init(source, out_dir, task, seed, revision, trust_remote_code, arch):
    runtime.setup(1, "cpu", seed)
    runtime.log.info("Hugging Face Hub offline: HF_HUB_OFFLINE=%s", os.environ.get("HF_HUB_OFFLINE"))
    if trust_remote_code:
        runtime.log.warning("trust_remote_code is ON for %s (config model.trust_remote_code)", source)
    families.get(task["type"]).init_base(source, out_dir, task, seed, revision, trust_remote_code, arch)
    runtime.log.info("theta_0 from %s saved to %s", source, out_dir)


jobs.run(
    init, snakemake.log[0],
    source=snakemake.params.source, out_dir=os.path.dirname(snakemake.output.weights), task=snakemake.params.task,
    seed=snakemake.params.seed, revision=snakemake.params.revision, trust_remote_code=snakemake.params.trust_remote_code,
    arch=snakemake.config.get("model", {}).get("arch"),  # not a param: see prepare_data.py
)
