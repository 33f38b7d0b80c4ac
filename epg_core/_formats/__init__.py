"""Formats: the HDF5 files (interventions, outputs, the study store), the scores tables (CSV, Parquet), atomic
writes and locks, and the guard that never replaces a file epg did not write. Re-exported by ``epg_core``."""
