"""Machine-targeted rate control: per image, the lowest quality whose ML-CLIPSim reaches a target.

    result = control_rate(create_codec("webp"), image, target=0.9, scorer=MLCLIPSimScorer("torchvision/mobilenet_v2"))
    result.point, result.bits, result.score, result.reached

No real codec is differentiable, so this is where a metric that predicts machines pays off without
training: every image ships at the fewest bytes that still serve machines (as far as ML-CLIPSim
predicts it).

**Search.** Over the codec's ladder (all qualities 1..100 of a classic codec; the checkpoints of a
learned family), lowest rate first. ``search="bisect"`` (default) first codes the top of the ladder:
if even that misses the target, the result is the top point with ``reached=False``. Otherwise it
bisects for the boundary, keeping the invariant "the upper end reaches the target" (about
log2(len(ladder)) + 1 codings: 8 for 100 qualities). On a ladder whose score rises with the point
(monotone) this is the lowest point that reaches the target.

**Non-monotone ladders.** Real codecs are not always monotone (a higher quality can score slightly
lower). Bisection then still returns a point that reaches the target, and its lower neighbour on the
ladder was evaluated and missed, but a lower point elsewhere might also reach it. Every coding the
search made is kept: the result is the lowest *evaluated* point that reaches the target (never a point
that misses it), and ``monotone`` says whether the evaluated scores rose with the point; when it is
False the result is flagged, not hidden. ``search="exhaustive"`` codes every point of the ladder and
returns the true lowest one that reaches the target (100 codings per image for a classic codec).

:class:`RateControlledCodec` (registry name ``BASE@mlclipsim``) puts this behind the codec
interface: its operating points are targets, so the rate-task study draws its curve like any codec's.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mlclipsim.coding.interface import (
    Codec,
    CodedImages,
    Point,
    check_codec_images,
    register_codec_modifier,
)

SEARCHES = ("bisect", "exhaustive")
DEFAULT_TARGETS: tuple[float, ...] = (0.85, 0.9, 0.94, 0.97, 0.99)
ScoreFn = Callable[[torch.Tensor, Any], torch.Tensor]


@dataclass(frozen=True)
class Evaluation:
    """One coding made by the search: point, file size in bits, ML-CLIPSim score against the original."""

    point: Point
    bits: int
    score: float


@dataclass(frozen=True)
class RateControlResult:
    """What :func:`control_rate` chose for one image.

    Attributes:
        point: the chosen operating point (the top of the ladder when the target is not reached).
        bits: its file size in bits; ``score``: its ML-CLIPSim score; ``target``: the target.
        reached: ``score >= target``.
        monotone: the evaluated scores did not fall as the point rose (see the module docstring).
        evaluations: every coding the search made, in ladder order.
        reconstruction: (3,H,W) float32 in [0,1], the decoded chosen file; ``file``: its bytes.
    """

    point: Point
    bits: int
    score: float
    target: float
    reached: bool
    monotone: bool
    evaluations: tuple[Evaluation, ...]
    reconstruction: torch.Tensor = field(repr=False)
    file: bytes = field(repr=False)

    def summary(self) -> dict[str, Any]:
        return {"point": self.point, "bits": self.bits, "score": self.score, "target": self.target,
                "reached": self.reached, "monotone": self.monotone, "codings": len(self.evaluations)}


def check_target(target: Any) -> float:
    """An ML-CLIPSim target in (0, 1]; ValueError otherwise."""
    if isinstance(target, bool):
        raise ValueError(f"An ML-CLIPSim target is a number in (0, 1], got {target!r}.")
    try:
        value = float(target)
    except (TypeError, ValueError):
        raise ValueError(f"An ML-CLIPSim target is a number in (0, 1], got {target!r}.") from None
    if not math.isfinite(value) or not 0.0 < value <= 1.0:
        raise ValueError(f"An ML-CLIPSim target must be in (0, 1] (1 = identical to the original), got {target!r}.")
    return value


def _reference_and_score(scorer: Any, reference: torch.Tensor) -> Callable[[torch.Tensor], float]:
    """A function decoded (1,3,H,W) -> float score against ``reference``; references encoded once if possible."""
    if hasattr(scorer, "reference_features"):
        features = scorer.reference_features(reference)

        def score(decoded: torch.Tensor) -> float:
            with torch.no_grad():
                return float(scorer(decoded, features)[0])
    else:
        def score(decoded: torch.Tensor) -> float:
            with torch.no_grad():
                return float(torch.as_tensor(scorer(decoded, reference)).reshape(-1)[0])
    return score


def control_rate(codec: Codec, image: torch.Tensor, target: float, scorer: Any,
                 ladder: Sequence[Point] | None = None, search: str = "bisect",
                 memo: dict | None = None) -> RateControlResult:
    """The lowest point of ``ladder`` whose ML-CLIPSim score against ``image`` reaches ``target``.

    Args:
        codec: any :class:`~mlclipsim.coding.interface.Codec`.
        image: (3,H,W) or (1,3,H,W) float in [0,1], the original.
        target: ML-CLIPSim score to reach, in (0, 1].
        scorer: an :class:`~mlclipsim.metrics.MLCLIPSimScorer` (references encoded once), or any
            callable ``(decoded (1,3,H,W), reference (1,3,H,W)) -> (1,)`` higher-is-better score.
        ladder: the points to search, lowest rate first (default: ``codec.ladder``).
        search: ``"bisect"`` or ``"exhaustive"`` (see the module docstring).
        memo: optional dict reused across calls on the same image (e.g. several targets): codings
            are cached in it by point.

    Raises:
        ValueError: bad target, search, ladder or image.
    """
    target = check_target(target)
    if search not in SEARCHES:
        raise ValueError(f"Unknown search {search!r}; choose one of {list(SEARCHES)}.")
    if image.ndim == 3:
        image = image[None]
    check_codec_images(image)
    if image.shape[0] != 1:
        raise ValueError(f"control_rate takes one image, (3,H,W) or (1,3,H,W), got shape {tuple(image.shape)}.")
    points = [codec.check_point(p) for p in (codec.ladder if ladder is None else ladder)]
    if not points:
        raise ValueError("The ladder to search is empty.")
    if len(set(map(str, points))) != len(points):
        raise ValueError(f"The ladder repeats a point: {points}.")
    cache: dict = {} if memo is None else memo
    score_fn: Callable[[torch.Tensor], float] | None = cache.get("__score__")
    if score_fn is None:
        score_fn = _reference_and_score(scorer, image)
        cache["__score__"] = score_fn

    def evaluate(index: int) -> tuple[Evaluation, torch.Tensor, bytes]:
        key = ("point", str(points[index]))
        if key not in cache:
            coded = codec.code(image, points[index])
            decoded = coded.reconstructions[:1]
            cache[key] = (Evaluation(points[index], int(coded.bits[0]), score_fn(decoded)), decoded[0],
                          coded.files[0])
        return cache[key]

    evaluated: dict[int, Evaluation] = {}
    if search == "exhaustive":
        for i in range(len(points)):
            evaluated[i] = evaluate(i)[0]
    else:
        top = len(points) - 1
        evaluated[top] = evaluate(top)[0]
        if evaluated[top].score >= target:
            low, high = 0, top  # invariant: points[high] reaches the target
            while low < high:
                mid = (low + high) // 2
                evaluated[mid] = evaluate(mid)[0]
                if evaluated[mid].score >= target:
                    high = mid
                else:
                    low = mid + 1
    order = sorted(evaluated)
    reaching = [i for i in order if evaluated[i].score >= target]
    chosen = reaching[0] if reaching else order[-1]
    scores = [evaluated[i].score for i in order]
    monotone = all(a <= b for a, b in zip(scores, scores[1:]))
    evaluation, reconstruction, data = evaluate(chosen)
    return RateControlResult(evaluation.point, evaluation.bits, evaluation.score, target,
                             evaluation.score >= target, monotone, tuple(evaluated[i] for i in order),
                             reconstruction, data)


class RateControlledCodec(Codec):
    """``BASE@mlclipsim``: the base codec at, per image, the lowest point reaching an ML-CLIPSim target.

    Operating points are targets in (0, 1] (default :data:`DEFAULT_TARGETS`); any target in (0, 1] is
    valid. ``code()`` reports per image in ``details`` the chosen point, its score and whether the
    target was reached. Codings of the last image are reused across targets (same image, same point).

    Args:
        base: the codec to control.
        scorer: an ML-CLIPSim scorer (or any callable, see :func:`control_rate`); or
        backbone / pretrained: build an :class:`~mlclipsim.metrics.MLCLIPSimScorer` on first use.
        targets: default operating points.
        ladder: the base codec's points to search (default its whole ladder).
        search: ``"bisect"`` or ``"exhaustive"``.
    """

    modifier = "mlclipsim"

    def __init__(self, base: Codec, scorer: Any = None, backbone: str | None = None, pretrained: Any = None,
                 targets: Sequence[float] = DEFAULT_TARGETS, ladder: Sequence[Point] | None = None,
                 search: str = "bisect") -> None:
        if scorer is None and backbone is None:
            raise ValueError(f"{base.name}@mlclipsim needs an ML-CLIPSim scorer: pass scorer= or backbone= "
                             "(e.g. backbone='torchvision/mobilenet_v2').")
        if search not in SEARCHES:
            raise ValueError(f"Unknown search {search!r}; choose one of {list(SEARCHES)}.")
        self.base = base
        self.name = f"{base.name}@{self.modifier}"
        self.suffix = base.suffix
        self._scorer, self.backbone, self.pretrained = scorer, backbone, pretrained
        self._points = tuple(sorted(check_target(t) for t in targets))
        self.search_ladder = None if ladder is None else tuple(base.check_point(p) for p in ladder)
        self.search = search
        self._memo_key: str | None = None
        self._memo: dict = {}

    @property
    def scorer(self) -> Any:
        if self._scorer is None:
            from mlclipsim.metrics import MLCLIPSimScorer

            self._scorer = MLCLIPSimScorer(self.backbone, pretrained=self.pretrained)
        return self._scorer

    @property
    def points(self) -> tuple[Point, ...]:
        return self._points

    def parse_point(self, text: str) -> Point:
        return check_target(text.strip())

    def check_point(self, point: Point) -> Point:
        return check_target(point)

    def rate_order(self, point: Point) -> float:
        return float(point)

    def _memo_for(self, image: torch.Tensor) -> dict:
        digest = hashlib.sha1(image.detach().float().cpu().numpy().tobytes()).hexdigest()
        key = f"{tuple(image.shape)}:{digest}"
        if key != self._memo_key:
            self._memo_key, self._memo = key, {}
        return self._memo

    def _code(self, images: torch.Tensor, point: Point) -> CodedImages:
        results = [control_rate(self.base, image, float(point), self.scorer, self.search_ladder, self.search,
                                memo=self._memo_for(image)) for image in images]
        reconstructions = torch.stack([r.reconstruction for r in results]).to(images.device)
        return CodedImages(reconstructions, [r.bits for r in results], [r.file for r in results],
                           tuple(r.summary() for r in results))


def _rate_controlled(base: Codec, **options: Any) -> RateControlledCodec:
    return RateControlledCodec(base, **options)


register_codec_modifier("mlclipsim", _rate_controlled,
                        "the base codec at, per image, the lowest quality whose ML-CLIPSim reaches the target "
                        "(points = targets in (0, 1]; needs backbone= or scorer=)", overwrite=True)
