"""Benchmark of the shuffle test (issue 3): ``epg_core.permutation_test`` against the authors' loop and scipy.

The harness is installed with the package as ``epg_bench`` (the repository's ``bench/`` folder)::

    epg bench                                             # full run, a few minutes on 2 cores
    python -m epg_bench.permutation --quick               # ~30 s: smaller K for the baselines, extrapolated
    python -m epg_bench.permutation --case sweep --json bench.json
    python -m epg_bench.permutation --one sweep epg32 --out r.json   # one implementation, one case

Cases (all with K = 10,000 shuffles, two-sided p-values, unit spacing): ``one`` = one curve of N = 101 steps
(the authors' original + 100 edits), ``sweep`` = 1,616 curves x 101 steps (8 architectures x 2
initialisations x 101 epochs), ``rotation`` = 30 curves x 360 steps (one image per degree). The curves are
synthetic and seeded: a logistic effect of random amplitude, centre and width plus noise of random size,
so that the p-values spread over (0, 1] (curve 0, the one-curve case, is pure noise).

Implementations (each in its own subprocess, so that its peak resident memory ``ru_maxrss`` is its own and
JAX's float32 / float64 modes never mix):

- ``authors``: the paper's reference loop, ``np.random.permutation`` + ``np.gradient`` per shuffle, timed on
  a few curves (quick: one curve, 1,000 shuffles) and extrapolated linearly in curves and shuffles
  (the notes column says from what).
- ``scipy_curve``: ``scipy.stats.permutation_test(..., permutation_type='pairings', vectorized=True)``
  called once per curve; curves are timed until a budget (20 s, quick 0.5 s) and the rest is extrapolated.
- ``scipy_batch``: one call on the whole ``(B, N)`` array, ``axis=-1``, ``batch=SCIPY_BATCH``. 16 was the
  fastest of 8 / 16 / 64 on the full sweep (4.3 s vs 7.0 / 6.7 s, idle 2-core machine) and of
  16 / 64 / 256 / 1000 on 128 of its curves (batch=None needs tens of GiB). Quick: the first 64 curves
  with 1,000 shuffles, extrapolated.
- ``epg32`` / ``epg64``: ``epg_core.permutation_test`` in float32 (default) and with ``jax_enable_x64``.
  The first call (compile + permutation generation) is timed separately; the reported time is the median
  of >= 5 warm calls (quick: >= 1, within a budget); "incl. perm. gen." is a warm call after
  ``epg_core._permutation._engine.clear_cache()`` (or, if there is none, with a fresh seed); the compile time is
  first call minus that.

Compute lower bound (``bound`` row, measured inside the ``epg32`` subprocess, after its peak memory was
read): a minimal fused JAX kernel that does only the arithmetic of the statistic -- for every lane of a
pre-gathered dense block ``[N, W]`` of shuffled curves, the ``np.gradient`` stencil (central differences,
one-sided edges), ``|.|`` and the mean over the N steps -- with no gather, no permutation generation and no
comparison counting. The block is small enough to stay in cache (the real engine reads its curves from a
small, cache-resident array too), and a ``fori_loop`` inside one jitted call sweeps over two such blocks
(a loop-carried index, so nothing can be hoisted) many times, so that dispatch costs nothing. Two
formulations (an unrolled sum over the steps, for N <= 160, and a ``fori_loop`` over the steps with
unroll 8) times a few lane widths are timed and the fastest rate wins: "stencil terms per second", one
term being one step of one shuffled curve. The kernel's output is checked against numpy. The lower bound
of a case is ``B * K * N`` terms at that rate; epg_core's distance to it is its time divided by the bound.

p-value agreement: for each implementation, the largest over the compared curves of
``|p_a - p_ref| / sqrt(p(2 - p) (1/K_a + 1/K_ref))`` with ``p`` the mean of the two. A two-sided Monte-Carlo
p-value is ``2 q`` with ``q ~ Binomial(K, p/2) / K``, so ``p (2 - p) / K`` is its variance and the
denominator is the standard error of the difference of two independent estimates (the reference is scipy
batched when it ran, else scipy per curve; the reference row itself is compared with scipy per curve).
Under agreement each z is about standard normal; the column also shows the 99 % quantile of the largest of
that many |z| (Sidak), which the largest z should stay under.

Busy machine: the harness reads ``/proc/stat`` around every subprocess and subtracts the subprocess's own
CPU time; when other processes used more than 10 % of that wall time, the row's note says "BUSY" (its time
is then pessimistic; rerun on an idle machine for acceptance numbers).

Error correlation between adjacent curves (``errcorr``): ``B`` curves in adjacent pairs that are
near-duplicates (white noise ``N(0, 1)``, the second of each pair plus ``1e-6`` noise), as two adjacent
checkpoints of a sweep whose outputs barely change. The steps are few (N = 8, quick 7), so every curve's *exact*
p-value is known by enumerating all ``N!`` orderings (numpy, float64, not epg_core). Each method's error is
``e = p_MC - p_exact`` (no reference noise at all), and the reported number is Pearson's correlation of
``e`` between the two curves of each pair, over the pairs (standard error about ``1/sqrt(pairs)`` when it
is 0). Methods: epg_core (one call on all curves: shared permutations plus its per-curve relabelling),
shared permutations without relabelling (numpy, what the layout would give without the fix: the errors of
near-duplicates are then almost identical), independent permutations per curve (numpy), and epg_core on
*exact* duplicate pairs (its relabelling is seeded by the curve's content, so identical curves get
identical p-values by design). The root-mean-square error is reported beside it: equal rms for all methods
means every curve's test keeps its Monte-Carlo precision.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ._perm_cases import CASES as CASES
from ._perm_cases import ERRCORR_FULL, ERRCORR_LABELS, ERRCORR_QUICK, SCIPY_BATCH
from ._perm_cases import IMPL_LABELS as IMPL_LABELS
from ._perm_cases import IMPLS as IMPLS
from ._perm_cases import Case as Case
from ._perm_cases import ErrCorrSpec as ErrCorrSpec
from ._perm_cases import agreement_z as agreement_z
from ._perm_cases import epg_numpy as epg_numpy
from ._perm_cases import max_z_bound as max_z_bound
from ._perm_errcorr import exact_pvalues as exact_pvalues
from ._perm_errcorr import run_errcorr
from ._perm_impls import run_authors, run_epg, run_scipy_batch, run_scipy_curve

PACKAGE_DIR = Path(__file__).resolve().parent

# --------------------------------------------------------------------------------------------------
# Orchestration


def run_one(spec: str, impl: str, quick: bool) -> dict[str, Any]:
    """Run one implementation of one case in this process (the body of ``--one``)."""
    if impl == "errcorr":
        _, b, n, k = spec.split(":")
        return run_errcorr(ErrCorrSpec(int(b), int(n), int(k)), quick)
    case = Case.parse(spec)
    if impl == "authors":
        return run_authors(case, quick)
    if impl == "scipy_curve":
        return run_scipy_curve(case, quick)
    if impl == "scipy_batch":
        return run_scipy_batch(case, quick)
    if impl in ("epg32", "epg64"):
        return run_epg(case, quick, x64=impl == "epg64", with_bound=impl == "epg32")
    raise ValueError(f"unknown implementation {impl!r}; use one of {', '.join(IMPLS)} or errcorr")


def _busy_cpu_s() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (``/proc/stat``), or None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = [int(v) for v in fields]
    except (OSError, ValueError, IndexError):
        return None
    busy = sum(ticks[:8]) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)  # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def _run_child(spec: str, impl: str, quick: bool, tmp: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """``python -m epg_bench.permutation --one SPEC IMPL`` in a fresh process (the installed package; a source
    run as ``python -m bench.permutation`` puts its checkout on the child's path); its JSON result, or an error."""
    out = tmp / f"{spec.replace(':', '_')}-{impl}.json"
    package = __package__ or "epg_bench"
    cmd = [sys.executable, "-m", f"{package}.permutation", "--one", spec, impl, "--out", str(out)] + \
        (["--quick"] if quick else [])
    env = dict(os.environ)
    if package == "bench":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_DIR.parent), env.get("PYTHONPATH")]))
    env.pop("JAX_ENABLE_X64", None)  # each child sets its own precision
    log(f"[bench] {spec} {impl} ...")
    busy0, own0 = _busy_cpu_s(), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    busy1, own1 = _busy_cpu_s(), resource.getrusage(resource.RUSAGE_CHILDREN)
    foreign = None
    if busy0 is not None and busy1 is not None:  # CPU time of other processes while this one ran
        own = (own1.ru_utime + own1.ru_stime) - (own0.ru_utime + own0.ru_stime)
        foreign = max(0.0, (busy1 - busy0) - own)
    result: dict[str, Any]
    if out.is_file():
        result = json.loads(out.read_text())
    else:
        lines = [ln for ln in (proc.stderr or proc.stdout or "").strip().splitlines() if ln.strip()]
        result = {"error": lines[-1] if lines else f"exit code {proc.returncode}"}
    result["process_wall_s"] = wall
    result["foreign_cpu_s"] = foreign
    if "error" in result:
        log(f"[bench] {spec} {impl} failed: {result['error']}")
    elif "time_s" in result:
        log(f"[bench] {spec} {impl}: {result['time_s']:.4g} s ({result.get('note', '')}), "
            f"peak {result.get('peak_rss_mb', float('nan')):.0f} MB, process {wall:.1f} s")
    return result


def _derive(case: Case, impls: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Speed-ups, distance to the lower bound and p-value agreement of one case."""
    ok = {name: r for name, r in impls.items() if "error" not in r and "time_s" in r}
    scipy_times = [ok[n]["time_s"] for n in ("scipy_curve", "scipy_batch") if n in ok]
    best_scipy = min(scipy_times) if scipy_times else None
    authors = ok.get("authors", {}).get("time_s")
    bound = None
    rate = ok.get("epg32", {}).get("bound", {}).get("rate_terms_per_s")
    if rate:
        terms = case.n_curves * case.n_permutations * case.n_steps
        bound = dict(time_s=terms / rate, terms=terms, **ok["epg32"]["bound"])
    ref = "scipy_batch" if "scipy_batch" in ok else ("scipy_curve" if "scipy_curve" in ok else None)
    derived: dict[str, Any] = dict(best_scipy_s=best_scipy, authors_s=authors, reference=ref, lower_bound=bound,
                                   impls={})
    for name, r in ok.items():
        d: dict[str, Any] = {}
        t = r["time_s"]
        if best_scipy:
            d["speedup_vs_best_scipy"] = best_scipy / t
        if authors:
            d["speedup_vs_authors"] = authors / t
        if bound and name.startswith("epg"):
            d["times_lower_bound"] = t / bound["time_s"]
        other = ref if name != ref else ("scipy_curve" if name != "scipy_curve" and "scipy_curve" in ok else None)
        if other and r.get("pvalues") and ok[other].get("pvalues"):
            n_cmp = min(len(r["pvalues"]), len(ok[other]["pvalues"]))
            d["agreement"] = dict(against=other, n_curves=n_cmp,
                                  max_z=agreement_z(r["pvalues"], r["k"], ok[other]["pvalues"], ok[other]["k"]),
                                  z99=max_z_bound(n_cmp))
        derived["impls"][name] = d
    return derived


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None or not math.isfinite(v):
        return "–"
    if abs(v) >= 1000:
        s = f"{v:,.0f}"
    elif abs(v) >= 0.01:
        s = f"{v:.3g}"
    else:
        s = f"{v:.2g}"
    return s + unit


def format_table(results: dict[str, Any]) -> str:
    """The markdown table (one row per case x implementation, then the error-correlation rows)."""
    head = ["case", "implementation", "time [s]", "compile [s]", "incl. perm. gen. [s]", "peak RSS [MB]",
            "vs best scipy", "vs authors", "vs lower bound", "p agreement: max z (99% bound)", "notes"]
    rows: list[list[Any]] = []
    for cres in results["cases"].values():
        title = cres["case"]["title"]
        derived = cres["derived"]
        for name, r in cres["impls"].items():
            label = IMPL_LABELS.get(name, name)
            if "error" in r:
                rows.append([title, label] + ["–"] * 8 + [f"failed: {r['error']}"])
                continue
            d = derived["impls"].get(name, {})
            agr = d.get("agreement")
            agr_s = "–" if not agr else f"{agr['max_z']:.2f} ({agr['z99']:.2f})"
            if agr and name == derived["reference"]:
                agr_s += f" vs {agr['against']}"
            note = r.get("note", "")
            foreign = r.get("foreign_cpu_s")
            if foreign is not None and foreign > 0.1 * r.get("process_wall_s", math.inf):
                note += f"; BUSY: others used {foreign:.1f} CPU-s during this {r['process_wall_s']:.1f} s process"
            if name == derived["reference"]:
                note = "p-value reference; " + note
            rows.append([
                title, label, _fmt(r["time_s"]),
                _fmt(r.get("compile_s")), _fmt(r.get("incl_generation_s")), _fmt(r.get("peak_rss_mb")),
                _fmt(d.get("speedup_vs_best_scipy"), "×"), _fmt(d.get("speedup_vs_authors"), "×"),
                _fmt(d.get("times_lower_bound"), "×"), agr_s, note,
            ])
        lb = derived.get("lower_bound")
        if lb:
            rows.append([
                title, IMPL_LABELS["bound"], _fmt(lb["time_s"]), "–", "–", "–",
                _fmt(derived["best_scipy_s"] / lb["time_s"] if derived["best_scipy_s"] else None, "×"),
                _fmt(derived["authors_s"] / lb["time_s"] if derived["authors_s"] else None, "×"), "1×", "–",
                f"{lb['terms']:.3g} terms at {lb['rate_terms_per_s']:.3g} terms/s ({lb['variant']}, W={lb['width']})",
            ])
    ec = results.get("error_correlation")
    if ec:
        if "error" in ec:
            rows.append(["error correlation", "–"] + ["–"] * 8 + [f"failed: {ec['error']}"])
        else:
            title = f"adjacent-error correlation ({ec['n_curves']:,} curves, N={ec['n_steps']}, K={ec['k']:,})"
            for name, m in ec["methods"].items():
                rows.append([title, ERRCORR_LABELS.get(name, name)] + ["–"] * 8 + [
                    f"rho = {m['rho']:.3f} (±{ec['rho_standard_error']:.3f}), rms error {m['rms_error']:.4f}"])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _machine() -> dict[str, Any]:
    info: dict[str, Any] = dict(python=platform.python_version(), platform=platform.platform(),
                                cpu_count=os.cpu_count(), numpy=np.__version__)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        from importlib.metadata import version

        info["scipy"], info["jax"] = version("scipy"), version("jax")
    except Exception:  # noqa: BLE001  (informational only)
        pass
    return info


def run_benchmark(
    cases: Sequence[Case] | None = None,
    *,
    impls: Sequence[str] = IMPLS,
    quick: bool = False,
    json_path: str | os.PathLike[str] | None = None,
    quiet: bool = False,
    errcorr: ErrCorrSpec | None | bool = True,
    stream: TextIO | None = None,
) -> dict[str, Any]:
    """Run the benchmark, print the markdown table to ``stream`` (stdout) and write the JSON if asked.

    ``errcorr=True`` runs the default error-correlation experiment (smaller with ``quick``), ``None`` /
    ``False`` skips it. Returns the results (what the JSON holds, plus the table under ``"table"``).
    """
    cases = list(cases) if cases is not None else list(CASES.values())
    unknown = [i for i in impls if i not in IMPLS]
    if unknown:
        raise ValueError(f"unknown implementation(s) {unknown}; use {', '.join(IMPLS)}")
    if errcorr is True:
        errcorr = ERRCORR_QUICK if quick else ERRCORR_FULL
    out_stream: TextIO = stream or sys.stdout

    def log(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    results: dict[str, Any] = dict(
        meta=dict(quick=quick, machine=_machine(), started=time.strftime("%Y-%m-%d %H:%M:%S"),
                  scipy_batch=SCIPY_BATCH, impls=list(impls)),
        cases={}, error_correlation=None)
    with tempfile.TemporaryDirectory(prefix="epg-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for case in cases:
            impl_results = {impl: _run_child(case.spec(), impl, quick, tmp, log) for impl in impls}
            results["cases"][case.name] = dict(case=dict(asdict(case), title=case.title), impls=impl_results,
                                               derived=_derive(case, impl_results))
        if errcorr:
            results["error_correlation"] = _run_child(errcorr.spec(), "errcorr", quick, tmp, log)
    results["meta"]["total_s"] = time.perf_counter() - t_start
    table = format_table(results)
    kind = ("QUICK run: baselines with 1,000 shuffles on subsets and extrapolated, fewer repeats; "
            "not for acceptance numbers" if quick else "full run")
    header = (f"epg bench: shuffle test, {kind}. Times in seconds for all curves with the case's K; "
              f"{results['meta']['machine'].get('cpu', '?')}, {os.cpu_count()} CPUs; "
              f"total {results['meta']['total_s']:.0f} s.")
    print(header, file=out_stream)
    print(file=out_stream)
    print(table, file=out_stream)
    print(file=out_stream)
    print("vs best scipy / vs authors: speed-up (their time / this time). vs lower bound: this time / "
          "bound. p agreement: largest |p - p_ref| / MC standard error of the difference, with the 99% "
          "quantile of the largest of that many |z| in brackets. rho: correlation of p-value errors "
          "between near-duplicate adjacent curves (exact p by enumeration). BUSY: other processes used the "
          "CPUs during that measurement (from /proc/stat), so its time is pessimistic.", file=out_stream)
    out_stream.flush()
    if json_path is not None:
        Path(json_path).write_text(json.dumps(_jsonable(results), indent=1, allow_nan=False) + "\n")
    results["table"] = table
    return results


def _jsonable(obj: Any) -> Any:
    """Drop per-curve p-value lists, turn non-finite floats into None (strict JSON)."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items() if k not in ("pvalues", "pvalues_centered")}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    return obj


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m epg_bench.permutation",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="~30 s run: smaller K for the baselines, extrapolated")
    parser.add_argument("--json", metavar="PATH", help="write the numbers as JSON")
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="case(s) to run (default: all)")
    parser.add_argument("--impl", action="append", choices=IMPLS, help="implementation(s) (default: all)")
    parser.add_argument("--no-errcorr", action="store_true", help="skip the error-correlation experiment")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--one", nargs=2, metavar=("CASE", "IMPL"),
                        help="run one implementation of one case in this process (used by the harness)")
    parser.add_argument("--out", metavar="PATH", help="with --one: where to write its JSON result")
    args = parser.parse_args(argv)
    if args.one:
        spec, impl = args.one
        try:
            result = run_one(spec, impl, args.quick)
        except Exception as exc:  # noqa: BLE001  (reported to the parent as one line)
            result = {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"}
        text = json.dumps(result)
        if args.out:
            Path(args.out).write_text(text)
        else:
            print(text)
        return 1 if "error" in result else 0
    cases = [CASES[c] for c in dict.fromkeys(args.case)] if args.case else None
    run_benchmark(cases, impls=tuple(dict.fromkeys(args.impl)) if args.impl else IMPLS, quick=args.quick,
                  json_path=args.json, quiet=args.quiet, errcorr=not args.no_errcorr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
