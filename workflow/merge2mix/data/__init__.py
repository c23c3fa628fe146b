"""Data: sources (package / hf / local) -> a text/label DataFrame -> seeded train/val/test splits.

prepare.py does the work; packaged.py knows the datasets pip packages ship. Nothing is imported here
so that config validation (at DAG-build time) can check package entries without pandas.
"""
