import os

from merge2mix import families, jobs, runtime


def init(source, out_dir, task, seed, revision, trust_remote_code):
    runtime.setup(1, "cpu", seed)
    if trust_remote_code:
        runtime.log.warning("trust_remote_code is ON for %s (config model.trust_remote_code)", source)
    families.get(task["type"]).init_base(source, out_dir, task["labels"], seed, revision, trust_remote_code)
    runtime.log.info("theta_0 from %s saved to %s", source, out_dir)


jobs.run(
    init, snakemake.log[0],
    source=snakemake.params.source, out_dir=os.path.dirname(snakemake.output.weights), task=snakemake.params.task,
    seed=snakemake.params.seed, revision=snakemake.params.revision, trust_remote_code=snakemake.params.trust_remote_code,
)
