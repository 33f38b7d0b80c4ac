"""The gradio page: pick model, checkpoint, sequence and class; see the strip, the curve with its scores, the
shuffle null with the exact null mean +- SD, and the EPG over checkpoints. Bound to 127.0.0.1 only.

One handler (``show``, also the ``/show`` endpoint for ``gradio_client``) answers every choice: it repairs a stale
combination (a sequence the new model lacks), scores on demand with a progress bar, and returns every output.
The first selection is drawn before the server starts, so the page shows a curve as soon as it loads.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import epg_core as E

from ._explore import Explorer, View
from ._figures import checkpoints_figure, curve_figure, null_figure, null_markdown, strip_figure, verdict_markdown
from ._source import HOST, PortError, check_port

__all__ = ["build_app", "serve", "run_until", "Served", "ELEM_IDS"]

#: DOM ids of the page's parts (the browser test looks for them).
ELEM_IDS = {"curve": "epg-curve", "verdict": "epg-verdict", "null": "epg-null", "null_text": "epg-null-text",
            "checkpoints": "epg-checkpoints", "strip": "epg-strip", "numbers": "epg-numbers"}
CSS = """
#epg-verdict h3 { margin: 0 0 .3em 0; }
footer { display: none !important; }
"""


def _quiet_gradio() -> None:
    """No telemetry, no version check, no share tunnel: the page talks to this machine only."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _outputs(view: View) -> tuple[Any, ...]:
    return (strip_figure(view), view.frames_note, curve_figure(view), verdict_markdown(view), null_figure(view),
            null_markdown(view), checkpoints_figure(view), view.summary())


def _updates(view: View) -> tuple[Any, ...]:
    """The outputs as gradio updates: the strip is hidden where there are no frames (the note says why)."""
    import gradio as gr

    strip, *rest = _outputs(view)
    return (gr.update(value=strip, visible=strip is not None), *rest)


def build_app(explorer: Explorer, *, say: Callable[[str], None] | None = None) -> Any:
    """The gradio ``Blocks`` of the explorer, with the first model x sequence already scored and drawn."""
    _quiet_gradio()
    import gradio as gr

    model, sequence, checkpoint, output = explorer.normalise(None, None, None, None)
    if say is not None:
        say(f"scoring {model} / {sequence} ...")
    first = explorer.view(model, sequence, checkpoint, output)
    info = first.info
    o = explorer.options
    opts = (f"K = {o.n_permutations:,} shuffles, {o.alternative}, alpha = {o.alpha}, seed {o.seed}, "
            f"{o.spacing} spacing, {o.precision}")
    frames = ", ".join(str(p) for p in explorer.source.interventions) or "none"

    with gr.Blocks(title="epg explorer", analytics_enabled=False) as app:
        gr.Markdown(f"## epg explorer\n`{explorer.source.outputs}` · frames from `{frames}` · {opts}")
        with gr.Row():
            # any value is let through to ``show``, which repairs a stale one: an API caller may switch the model
            # and pick a class of the new model in one call (gradio would check it against the old choices)
            model_dd = gr.Dropdown(explorer.models(), value=model, label="model", interactive=True,
                                   allow_custom_value=True)
            seq_dd = gr.Dropdown(explorer.sequences(model), value=sequence, label="sequence", interactive=True,
                                 allow_custom_value=True)
            ckpt_dd = gr.Dropdown(info.finished, value=checkpoint, label="checkpoint", interactive=True,
                                  allow_custom_value=True)
            class_dd = gr.Dropdown(explorer.class_choices(model, sequence), value=output, label="class",
                                   interactive=True, allow_custom_value=True)
        strip0, note0, curve0, verdict0, null0, nulltext0, over0, numbers0 = _outputs(first)
        strip = gr.Plot(strip0, label="intervention", elem_id=ELEM_IDS["strip"], format="png",
                        visible=strip0 is not None)
        strip_note = gr.Markdown(note0)
        with gr.Row():
            curve = gr.Plot(curve0, label="curve", elem_id=ELEM_IDS["curve"], format="png")
            with gr.Column():
                verdict = gr.Markdown(verdict0, elem_id=ELEM_IDS["verdict"])
                with gr.Accordion("all numbers of this view (JSON)", open=False):
                    numbers = gr.JSON(numbers0, label="numbers", elem_id=ELEM_IDS["numbers"], open=True)
        with gr.Row():
            with gr.Column():
                null = gr.Plot(null0, label="shuffle null", elem_id=ELEM_IDS["null"], format="png")
                null_text = gr.Markdown(nulltext0, elem_id=ELEM_IDS["null_text"])
            over = gr.Plot(over0, label="EPG over checkpoints", elem_id=ELEM_IDS["checkpoints"], format="png")

        def show(model: str, sequence: str, checkpoint: str, output: str,
                 progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008 - gradio's idiom
            model, sequence, checkpoint, output = explorer.normalise(model, sequence, checkpoint, output)

            def tick(done: int, total: int) -> None:
                progress((done, total), desc=f"scoring {sequence}", unit="checkpoints")

            try:
                view = explorer.view(model, sequence, checkpoint, output, progress=tick)
            except E.EpgError as exc:
                raise gr.Error(str(exc)) from None
            info = view.info
            return (gr.update(choices=explorer.models(), value=model),
                    gr.update(choices=explorer.sequences(model), value=sequence),
                    gr.update(choices=info.finished, value=checkpoint),
                    gr.update(choices=explorer.class_choices(model, sequence), value=output),
                    *_updates(view))

        inputs = [model_dd, seq_dd, ckpt_dd, class_dd]
        outputs = [model_dd, seq_dd, ckpt_dd, class_dd, strip, strip_note, curve, verdict, null, null_text, over,
                   numbers]
        gr.on([dd.input for dd in inputs], show, inputs, outputs, api_name="show", trigger_mode="always_last",
              show_progress="full")
    app.queue(default_concurrency_limit=1)
    return app


@dataclass
class Served:
    """A running explorer: its address and the way to stop it."""

    app: Any
    url: str

    def close(self) -> None:
        self.app.close(verbose=False)


def serve(explorer: Explorer, port: int, *, quiet: bool = False, say: Callable[[str], None] | None = None) -> Served:
    """Build the app and start it on ``127.0.0.1:port`` in the background (returns at once); a busy port is a
    :class:`PortError` raised before anything is scored."""
    check_port(port)
    app = build_app(explorer, say=say)
    check_port(port)  # scoring the first view took a while: still free?
    try:
        app.launch(server_name=HOST, server_port=int(port), prevent_thread_lock=True, share=False, quiet=quiet,
                   inbrowser=False, show_error=True, ssr_mode=False, footer_links=[], mcp_server=False,
                   pwa=False, enable_monitoring=False, css=CSS)
    except OSError as exc:
        raise PortError(f"port {port} on {HOST}: cannot start the server ({str(exc).splitlines()[0]})") from None
    return Served(app, f"http://{HOST}:{port}/")


def run_until(served: Served, stop_after: float | None = None) -> None:
    """Serve until Ctrl-C, or for ``stop_after`` seconds; then stop the server."""
    deadline = None if stop_after is None else time.monotonic() + stop_after
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2 if deadline is None else min(0.2, max(0.0, deadline - time.monotonic())))
    except KeyboardInterrupt:
        pass
    finally:
        served.close()
