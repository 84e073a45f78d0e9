"""The named codec recipes: name -> the config files (relative to codecs/) that compose it, in order.

The same table is in codecs/README.md; tests/test_recipes.py checks that every name's composition
parses to the config of the flat recipe file it replaced. A run is named with
``trainer.logger.init_args.name`` (the base recipes name it ``codec``); ``benchmarks/codec_training/
train_small.sh`` names each run after its recipe.

    python codecs/recipes.py bmshj2018-factorized_mix_small    # prints the recipe's --config arguments
"""

from __future__ import annotations

import sys
from pathlib import Path

FOLDER = Path(__file__).resolve().parent

RECIPES: dict[str, tuple[str, ...]] = {
    "bmshj2018-factorized_mse_small": ("base/small.yaml", "architecture/bmshj2018-factorized.yaml", "term/mse.yaml"),
    "bmshj2018-factorized_mse_full": ("base/full.yaml", "architecture/bmshj2018-factorized.yaml", "term/mse.yaml"),
    "bmshj2018-factorized_ms-ssim_small": ("base/small.yaml", "architecture/bmshj2018-factorized.yaml",
                                           "term/ms-ssim.yaml"),
    "bmshj2018-factorized_ms-ssim_full": ("base/full.yaml", "architecture/bmshj2018-factorized.yaml",
                                          "term/ms-ssim.yaml"),
    "bmshj2018-factorized_ml-clipsim_small": ("base/small.yaml", "architecture/bmshj2018-factorized.yaml",
                                              "term/ml-clipsim.yaml", "term/small/ml-clipsim.yaml"),
    "bmshj2018-factorized_ml-clipsim_full": ("base/full.yaml", "architecture/bmshj2018-factorized.yaml",
                                             "term/ml-clipsim.yaml"),
    "bmshj2018-factorized_mix_small": ("base/small.yaml", "architecture/bmshj2018-factorized.yaml", "term/mix.yaml",
                                       "term/small/mix.yaml"),
    "bmshj2018-factorized_mix_full": ("base/full.yaml", "architecture/bmshj2018-factorized.yaml", "term/mix.yaml"),
    "bmshj2018-factorized_mse-ra-miqa_small": ("base/small.yaml", "architecture/bmshj2018-factorized.yaml",
                                               "term/mse-ra-miqa.yaml", "term/small/mse-ra-miqa.yaml"),
    "bmshj2018-factorized_mse-ra-miqa_full": ("base/full.yaml", "architecture/bmshj2018-factorized.yaml",
                                              "term/mse-ra-miqa.yaml"),
    "bmshj2018-factorized_ra-miqa_small": ("base/small.yaml", "architecture/bmshj2018-factorized.yaml",
                                           "term/ra-miqa.yaml", "term/small/ra-miqa.yaml"),
    "bmshj2018-hyperprior_mse_small": ("base/small.yaml", "architecture/bmshj2018-hyperprior.yaml", "term/mse.yaml"),
    "bmshj2018-hyperprior_mse_full": ("base/full.yaml", "architecture/bmshj2018-hyperprior.yaml", "term/mse.yaml"),
    "bmshj2018-hyperprior_ms-ssim_small": ("base/small.yaml", "architecture/bmshj2018-hyperprior.yaml",
                                           "term/ms-ssim.yaml"),
    "bmshj2018-hyperprior_ms-ssim_full": ("base/full.yaml", "architecture/bmshj2018-hyperprior.yaml",
                                          "term/ms-ssim.yaml"),
    "bmshj2018-hyperprior_ml-clipsim_small": ("base/small.yaml", "architecture/bmshj2018-hyperprior.yaml",
                                              "term/ml-clipsim.yaml", "term/small/ml-clipsim.yaml"),
    "bmshj2018-hyperprior_ml-clipsim_full": ("base/full.yaml", "architecture/bmshj2018-hyperprior.yaml",
                                             "term/ml-clipsim.yaml"),
    "bmshj2018-hyperprior_mix_small": ("base/small.yaml", "architecture/bmshj2018-hyperprior.yaml", "term/mix.yaml",
                                       "term/small/mix.yaml"),
    "bmshj2018-hyperprior_mix_full": ("base/full.yaml", "architecture/bmshj2018-hyperprior.yaml", "term/mix.yaml"),
    # equal-step fine-tunes of the variable-rate base (issue 16); born composed, so no flat file
    "mbt2018-mean-vr_mse_finetune_small": ("base/finetune.yaml", "architecture/mbt2018-mean-vr.yaml", "term/mse.yaml"),
    "mbt2018-mean-vr_ms-ssim_finetune_small": ("base/finetune.yaml", "architecture/mbt2018-mean-vr.yaml",
                                               "term/ms-ssim.yaml", "term/finetune/ms-ssim.yaml"),
    "mbt2018-mean-vr_mix_finetune_small": ("base/finetune.yaml", "architecture/mbt2018-mean-vr.yaml", "term/mix.yaml",
                                           "term/finetune/mix.yaml"),
    "mbt2018-mean-vr_ml-clipsim-dominant_finetune_small": ("base/finetune.yaml", "architecture/mbt2018-mean-vr.yaml",
                                                           "term/finetune/ml-clipsim-dominant.yaml"),
}
FINETUNE_RECIPES = tuple(name for name in RECIPES if "_finetune_" in name)
"""Recipes that were never flat files (tests/test_recipes.py has no flat file to compare them with)."""


def config_paths(name: str) -> list[Path]:
    """The files of a named recipe, as paths."""
    if name not in RECIPES:
        raise KeyError(f"No codec recipe named {name!r}; recipes: {', '.join(RECIPES)}.")
    return [FOLDER / part for part in RECIPES[name]]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: python {sys.argv[0]} RECIPE_NAME   (recipes: {', '.join(RECIPES)})")
    try:
        paths = config_paths(sys.argv[1])
    except KeyError as err:
        sys.exit(f"error: {err.args[0]}")
    print(" ".join(f"--config {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}"
                   for path in paths))
