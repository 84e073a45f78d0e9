"""Export a trained codec as the plain CompressAI state dict of its zoo architecture.

    python -m mlclipsim.coding.export CKPT OUT.pth

The file loads without Lightning or mlclipsim into CompressAI::

    from compressai.zoo.image import model_architectures
    model = model_architectures["bmshj2018-hyperprior"].from_state_dict(torch.load("OUT.pth"))
    # or, for a model trained at a zoo quality: compressai.zoo.bmshj2018_hyperprior(quality=3).load_state_dict(...)

The entropy-coder tables are built (``model.update(force=True)``) before saving, so the exported model
can ``compress()`` / ``decompress()`` at once, and every decoder uses the encoder's tables.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from mlclipsim.coding.architectures import channels_of, load_codec


def export_state_dict(ckpt: str | os.PathLike, out: str | os.PathLike, architecture: str | None = None
                      ) -> dict[str, object]:
    """Write the CompressAI state dict of the codec in ``ckpt`` (a Lightning checkpoint) to ``out``.

    Returns a summary: ``architecture``, ``channels``, ``out``, ``parameters``.
    """
    model, name = load_codec(ckpt, architecture=architecture)  # tables rebuilt from the final weights
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    temporary = out.with_name(out.name + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, out)
    return {"architecture": name, "channels": list(channels_of(name, state)), "out": str(out),
            "parameters": int(sum(p.numel() for p in model.parameters()))}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlclipsim.coding.export", description=__doc__.split("\n")[0])
    parser.add_argument("ckpt", help="Lightning checkpoint of CompressionModule")
    parser.add_argument("out", help="output .pth (plain CompressAI state dict)")
    args = parser.parse_args(argv)
    print(json.dumps(export_state_dict(args.ckpt, args.out), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
