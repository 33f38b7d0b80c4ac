"""Bridges from images and models to the HDF5 files that ``epg_core`` consumes, along the data flow.

``epg_bridges.interventions`` (images -> interventions.h5), ``epg_bridges.models`` (interventions.h5 -> outputs.h5),
``epg_bridges.report`` (outputs.h5 -> plots and HTML), ``epg_bridges.testing`` (tiny models and pipelines for tests
and demos) and ``epg_bridges.demo``. Importing this package imports none of them (each needs its own extra).
"""
