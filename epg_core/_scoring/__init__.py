"""Scoring: outputs files -> the scores table (options, groups, rows, verdicts, the study selection) and the
flip-prediction task. Re-exported by ``epg_core``."""
