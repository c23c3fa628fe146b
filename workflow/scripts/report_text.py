import pandas as pd

from merge2mix import jobs
from merge2mix.io import atomic_write_text, read_json
from merge2mix.summary import report_rst


def write(summary_json, methods_csv, out_rst):
    atomic_write_text(report_rst(read_json(summary_json), pd.read_csv(methods_csv).to_dict("records")), out_rst)


jobs.run(write, snakemake.log[0], summary_json=snakemake.input.summary, methods_csv=snakemake.input.methods,
         out_rst=snakemake.output[0])
