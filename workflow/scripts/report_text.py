import pandas as pd

from merge2mix import jobs
from merge2mix.io import atomic_write_text, read_json
from merge2mix.summary import markdown, report_rst


def write(summary_json, methods_csv, trust_json, out_rst, out_md, surrogate):
    summary, trust = read_json(summary_json), read_json(trust_json)
    atomic_write_text(report_rst(summary, pd.read_csv(methods_csv).to_dict("records"), trust), out_rst)
    atomic_write_text(markdown(summary, trust, surrogate), out_md)


jobs.run(write, snakemake.log[0], summary_json=snakemake.input.summary, methods_csv=snakemake.input.methods,
         trust_json=snakemake.input.trust, out_rst=snakemake.output.rst, out_md=snakemake.output.markdown,
         surrogate=snakemake.params.surrogate)
