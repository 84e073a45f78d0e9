"""Export a trained codec as the plain CompressAI state dict of its zoo architecture.

    python -m mlclipsim.coding.export CKPT OUT.pth [--overwrite]

The file loads without Lightning or mlclipsim into CompressAI::

    from compressai.zoo.image import model_architectures
    model = model_architectures["bmshj2018-hyperprior"].from_state_dict(torch.load("OUT.pth"))
    # or, for a model trained at a zoo quality: compressai.zoo.bmshj2018_hyperprior(quality=3).load_state_dict(...)

The entropy-coder tables are built (``model.update(force=True)``) before saving, so the exported model
can ``compress()`` / ``decompress()`` at once, and every decoder uses the encoder's tables.

The state dict also carries an export record (in its ``_metadata``, which ``load_state_dict`` ignores;
:func:`~mlclipsim.coding.architectures.export_metadata` reads it): the architecture, the channel
counts, the model's fingerprint (:func:`~mlclipsim.coding.architectures.model_fingerprint`, also
written into every bitstream) and the training settings (the Lightning hyper-parameters), so
``--architecture`` is never needed for a file exported here, and a changed file is detected.

A variable-rate model (``mbt2018-mean-vr``) also records its lambda ladder (``lmbdas``, lowest rate
first; the weights carry it too). The codec pilot's training checkpoints
(``benchmarks/codec_pilot/train_base.py``) export the same way: their model weights only (no
optimiser or RNG state), with the pilot's options, step and CPU time as the settings::

    cp benchmarks/results/codec_pilot/base_meangain64/checkpoint.pth /tmp/base.pth
    python -m mlclipsim.coding.export /tmp/base.pth mbt2018-mean-vr_base.pth
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from mlclipsim.coding.architectures import (
    METADATA_KEY,
    channels_of,
    is_lightning_checkpoint,
    load_codec,
    model_fingerprint,
    read_checkpoint,
)
from mlclipsim.coding.variable_rate import is_pilot_checkpoint, is_variable_rate, pilot_settings
from mlclipsim.core.files import atomic_write, check_output


def _plain(value: object) -> object:
    """``value`` as JSON types (what ``torch.load(weights_only=True)`` reads back); others as strings."""
    return json.loads(json.dumps(value, default=str))


def export_state_dict(ckpt: str | os.PathLike, out: str | os.PathLike, architecture: str | None = None,
                      overwrite: bool = True) -> dict[str, object]:
    """Write the CompressAI state dict of the codec in ``ckpt`` (a Lightning checkpoint or a codec-pilot
    training checkpoint) to ``out``, with its export record (see the module docstring); ``overwrite=False``
    refuses an existing ``out``.

    Returns a summary: ``architecture``, ``channels``, ``fingerprint``, ``out``, ``parameters`` and, for a
    variable-rate model, ``lmbdas``.
    """
    out = Path(out)
    check_output(out, inputs=[ckpt], overwrite=overwrite)
    model, name = load_codec(ckpt, architecture=architecture)  # tables rebuilt from the final weights
    data = read_checkpoint(ckpt)
    if is_lightning_checkpoint(data):
        settings = _plain(dict(data["hyper_parameters"]))
    else:
        settings = _plain(pilot_settings(data)) if is_pilot_checkpoint(data) else {}
    state = model.state_dict()
    state = type(state)((k, v.detach().cpu()) for k, v in state.items())
    state._metadata = dict(getattr(model.state_dict(), "_metadata", {}))  # type: ignore[attr-defined]
    record = {"architecture": name, "channels": list(channels_of(name, state)), "fingerprint": model_fingerprint(state),
              "settings": settings, "source": Path(ckpt).name}
    if is_variable_rate(model):
        record["lmbdas"] = [float(v) for v in model.lmbdas.tolist()]
    state._metadata[METADATA_KEY] = record  # type: ignore[attr-defined]
    atomic_write(out, lambda temporary: torch.save(state, temporary))
    summary = {"architecture": name, "channels": record["channels"], "fingerprint": record["fingerprint"],
               "out": str(out), "parameters": int(sum(p.numel() for p in model.parameters()))}
    if "lmbdas" in record:
        summary["lmbdas"] = record["lmbdas"]
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlclipsim.coding.export", description=__doc__.split("\n")[0])
    parser.add_argument("ckpt", help="Lightning checkpoint of CompressionModule, or a codec-pilot training checkpoint")
    parser.add_argument("out", help="output .pth (plain CompressAI state dict)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    args = parser.parse_args(argv)
    try:
        summary = export_state_dict(args.ckpt, args.out, overwrite=args.overwrite)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
