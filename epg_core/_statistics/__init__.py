"""Tested statistics as plug-ins: a :class:`Statistic` base class, one file per statistic, a registry by name.

``permutation_test(statistic=...)``, ``epg score --statistic`` and a study's ``[score] statistic`` take any
registered name (``statistic_names()``); adding a built-in is one file here plus one line in ``_registry.py``,
a user's own is one :func:`register_statistic` call. Re-exported by ``epg_core``.
"""
