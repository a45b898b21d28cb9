"""Predictions store: every run's per-example outputs on a dataset split, in a zarr v3 group.

`predict` fills a store (in this process or on Dask workers, resumable); `open_store` reads it;
`to_datamodels` writes the datamodels layout. See README.md, "Predictions store".
"""
