"""The shuffle engine: ``permutation_test`` (fixed K or sequential), its kernels per statistic, the shared
shuffle sets, the chunked scans and the sequential boundaries. Re-exported by ``epg_core``."""
