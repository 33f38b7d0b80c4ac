"""The built-in editors by ``--method`` name: adding an editor is one file plus one line here."""

from __future__ import annotations

#: name -> "module:Class" inside this package (imported on first use, so listing names loads no torch)
BUILTIN: dict[str, str] = {
    "instruct-pix2pix": "instruct_pix2pix:InstructPix2Pix",
    "ledits++": "ledits:Ledits",
    "cosxl": "cosxl:CosXL",
    "flux-kontext": "flux_kontext:FluxKontext",
    "qwen-image-edit": "qwen_image_edit:QwenImageEdit",
    "mgie": "mgie:Mgie",
}
