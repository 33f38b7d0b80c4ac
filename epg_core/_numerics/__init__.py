"""Numerics: finite-difference weights and derivatives on any grid, EPG and the baselines (Pearson, flips,
mutual information), exact null moments, the FDR correction. Pure functions of arrays; re-exported by
``epg_core``."""
