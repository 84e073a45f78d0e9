"""Machine-targeted rate control: per image, the cheapest point whose ML-CLIPSim reaches a target.

    result = control_rate(create_codec("webp"), image, target=0.9, scorer=MLCLIPSimScorer("torchvision/mobilenet_v2"))
    result.point, result.bits, result.score, result.reached

No real codec is differentiable, so this is where a metric that predicts machines pays off without
training: every image ships at the fewest bytes that still serve machines (as far as ML-CLIPSim
predicts it). Targets are raw scores in (0, 1], or predicted machine agreement when the scorer was
built with ``scale="agreement"`` (the map is monotone, so the search is the same).

**Search** (``search="bisect"``, default): a safeguarded interpolation search over the codec's
ladder (all qualities 1..100 of a classic codec; the checkpoints of a learned family), at most
``max_codings`` (5) new codings per image and target:

- the first probe is ``first_guess`` if given, else the middle of the ladder (the result then depends
  on the image alone, never on which images came before: a resumed study reproduces it);
- the search path depends on the image and the target only (a resumed study reproduces every choice);
  codings of the image made for an earlier target are reused when the path meets them (the memo holds
  every image seen, up to :data:`MEMO_IMAGES`) and cost nothing: the first probes are shared by all
  targets, and neighbouring targets share most of their path;
- with a bracket (a point that misses below one that reaches) the next probe interpolates the
  scores linearly (regula falsi), falling back to the midpoint when the same end moved twice; with
  points on one side only it extrapolates from the two nearest, else halves the way to the ladder's
  end; when one coding is left and nothing reached the target yet, the top of the ladder is probed.

It stops when the bracket closes (the lowest reaching point's lower neighbour misses: ``exact``) or
the budget is spent (then the lowest reaching point found, ``exact=False``: a few bytes too many,
never a missed target).

**Non-monotone ladders**, on purpose: real codecs are not monotone (a higher quality can score
slightly lower, and AVIF maps several qualities to one quantiser, so neighbouring files can be
identical or even smaller). The result is the evaluated point with the **fewest bits among those
that reach the target**, never one that misses it, and ``monotone`` says whether the evaluated scores
rose with the point. ``search="exhaustive"`` codes every point and returns the true cheapest point
that reaches the target (100 codings per image for a classic codec).

When the target is reached at the ladder's lowest point, ``at_lowest`` is set: the target does not
constrain this codec (the command line warns).

:class:`RateControlledCodec` (registry name ``BASE@mlclipsim``) puts this behind the codec
interface: its operating points are targets, so the rate-task study draws its curve like any codec's.
Without a scorer or backbone it uses ML-CLIPSim's default encoder (the best installed one offline).

**Equal-slope allocation** (:func:`allocate_slope`, registry name ``BASE@mlclipsim-slope``, operating
points = slopes lambda >= 0): instead of one target per image, every image takes the point maximising
``quality(score) - lambda * bpp`` among at most 5 probes that do not depend on lambda (so one set of
codings serves every operating point). One lambda for all images spends a total bit budget where the
predicted quality gained per bit is largest; ``quality`` maps scores to predicted machine agreement (a
fitted :class:`~mlclipsim.metrics.agreement_scale.AgreementScale`), or is the score itself.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
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
MAX_CODINGS = 5
"""New codings per image and target that the default search may make."""
MEMO_IMAGES = 256
"""Images whose codings :class:`RateControlledCodec` keeps for later targets."""
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
        evaluations: the codings on the search's path (reused ones included), in ladder order.
        reconstruction: (3,H,W) float32 in [0,1], the decoded chosen file; ``file``: its bytes.
        codings: codings on the search's path (at most ``max_codings`` with the default search).
        reused: how many of them came from the memo (coded for an earlier target, no time spent).
        exact: the search closed its bracket (the point below the chosen one was evaluated and misses).
        at_lowest: the target was reached at the lowest point of the ladder (it does not constrain the codec).
        seconds: wall time of this call (coding and scoring).
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
    codings: int = 0
    reused: int = 0
    exact: bool = True
    at_lowest: bool = False
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {"point": self.point, "bits": self.bits, "score": self.score, "target": self.target,
                "reached": self.reached, "monotone": self.monotone, "codings": self.codings, "reused": self.reused,
                "exact": self.exact, "at_lowest": self.at_lowest, "seconds": self.seconds,
                "probes": [e.point for e in self.evaluations]}


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


def _gap(score: float) -> float:
    """-log(1 - score): the quantity interpolated (a score approaches 1 roughly exponentially in quality)."""
    return -math.log(max(1.0 - score, 1e-6))


def _next_probe(scores: dict[int, float], target: float, top: int, first_guess: int | None,
                moved: list[str], last_coding: bool) -> int | None:
    """The next ladder index to code, or None when the search is done (see the module docstring).

    ``moved``: which end of the bracket each earlier bracket-phase probe replaced (``"lo"``/``"hi"``).
    """
    if not scores:
        return min(max(first_guess if first_guess is not None else top // 2, 0), top)
    reaching = [i for i in scores if scores[i] >= target]
    if reaching:
        hi = min(reaching)
        below = [i for i in scores if i < hi]
        lo = max(below) if below else -1
        if hi == lo + 1:
            return None
        if lo >= 0:  # a bracket: regula falsi, the midpoint when the same end moved twice
            if len(moved) >= 2 and moved[-1] == moved[-2]:
                return (lo + hi) // 2
            t = (_gap(target) - _gap(scores[lo])) / max(_gap(scores[hi]) - _gap(scores[lo]), 1e-12)
            return min(max(math.ceil(lo + t * (hi - lo)), lo + 1), hi - 1)
        higher = sorted(i for i in reaching if i > hi)
        if higher and scores[higher[0]] > scores[hi]:  # extrapolate downwards from the two lowest reaching
            slope = (_gap(scores[higher[0]]) - _gap(scores[hi])) / (higher[0] - hi)
            guess = math.ceil(hi - (_gap(scores[hi]) - _gap(target)) / slope)
        else:
            guess = (hi - 1) // 2
        return min(max(guess, 0), hi - 1)
    lo = max(scores)
    if lo == top:
        return None  # the top misses: out of reach
    if last_coding:
        return top
    lower = sorted((i for i in scores if i < lo), reverse=True)
    if lower and scores[lo] > scores[lower[0]]:  # extrapolate upwards from the two highest misses
        slope = (_gap(scores[lo]) - _gap(scores[lower[0]])) / (lo - lower[0])
        guess = math.ceil(lo + (_gap(target) - _gap(scores[lo])) / slope)
    else:
        guess = (lo + 1 + top + 1) // 2
    return min(max(guess, lo + 1), top)


def control_rate(codec: Codec, image: torch.Tensor, target: float, scorer: Any,
                 ladder: Sequence[Point] | None = None, search: str = "bisect",
                 memo: dict | None = None, max_codings: int = MAX_CODINGS,
                 first_guess: int | None = None) -> RateControlResult:
    """The cheapest point of ``ladder`` whose ML-CLIPSim score against ``image`` reaches ``target``.

    Args:
        codec: any :class:`~mlclipsim.coding.interface.Codec`.
        image: (3,H,W) or (1,3,H,W) float in [0,1], the original.
        target: score to reach, in (0, 1] (the scorer's scale: raw ML-CLIPSim or predicted agreement).
        scorer: an :class:`~mlclipsim.metrics.MLCLIPSimScorer` (references encoded once), or any
            callable ``(decoded (1,3,H,W), reference (1,3,H,W)) -> (1,)`` higher-is-better score.
        ladder: the points to search, lowest rate first (default: ``codec.ladder``).
        search: ``"bisect"`` (bounded interpolation search) or ``"exhaustive"`` (see the module docstring).
        memo: optional dict reused across calls on the same image (e.g. several targets): codings
            are cached in it by point and reused without counting against ``max_codings``.
        max_codings: codings on the search's path with ``search="bisect"`` (>= 1; memo hits count too,
            so that the path, and the choice, are the same with or without a memo).
        first_guess: the ladder index to code first when the memo knows nothing of the image.

    Raises:
        ValueError: bad target, search, ladder, budget or image.
    """
    started = time.perf_counter()
    target = check_target(target)
    if search not in SEARCHES:
        raise ValueError(f"Unknown search {search!r}; choose one of {list(SEARCHES)}.")
    if int(max_codings) < 1:
        raise ValueError(f"max_codings must be at least 1, got {max_codings!r}.")
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
    new_codings = 0

    def evaluate(index: int) -> tuple[Evaluation, torch.Tensor, bytes]:
        nonlocal new_codings
        key = ("point", str(points[index]))
        if key not in cache:
            coded = codec.code(image, points[index])
            decoded = coded.reconstructions[:1]
            cache[key] = (Evaluation(points[index], int(coded.bits[0]), score_fn(decoded)), decoded[0],
                          coded.files[0])
            new_codings += 1
        return cache[key]

    top = len(points) - 1
    evaluated: dict[int, Evaluation] = {}  # the path's own points: decisions never depend on the memo
    if search == "exhaustive":
        for i in range(len(points)):
            evaluated[i] = evaluate(i)[0]
    else:
        moved: list[str] = []  # bracket-phase moves only
        while len(evaluated) < max_codings:  # the path's length, memo hits included: the same path either way
            scores = {i: e.score for i, e in evaluated.items()}
            bracketed = any(v >= target for v in scores.values()) and any(v < target for v in scores.values())
            index = _next_probe(scores, target, top, first_guess, moved, len(evaluated) == max_codings - 1)
            if index is None:
                break
            evaluated[index] = evaluate(index)[0]
            if bracketed:
                moved.append("hi" if evaluated[index].score >= target else "lo")
    order = sorted(evaluated)
    reaching = [i for i in order if evaluated[i].score >= target]
    if reaching:
        chosen = min(reaching, key=lambda i: (evaluated[i].bits, i))
        lowest = min(reaching)
        exact = lowest == 0 or (lowest - 1) in evaluated
    else:
        chosen = order[-1]
        exact = top in evaluated
    scores = [evaluated[i].score for i in order]
    monotone = all(a <= b for a, b in zip(scores, scores[1:]))
    evaluation, reconstruction, data = evaluate(chosen)
    reached = evaluation.score >= target
    return RateControlResult(evaluation.point, evaluation.bits, evaluation.score, target, reached, monotone,
                             tuple(evaluated[i] for i in order), reconstruction, data, len(order),
                             len(order) - new_codings, exact,
                             reached and chosen == 0, time.perf_counter() - started)


class RateControlledCodec(Codec):
    """``BASE@mlclipsim``: the base codec at, per image, the cheapest point reaching an ML-CLIPSim target.

    Operating points are targets in (0, 1] (default :data:`DEFAULT_TARGETS`); any target in (0, 1] is
    valid. ``code()`` reports per image in ``details`` the chosen point, its score, whether the target
    was reached, the codings made and the time taken. Codings of every image (up to :data:`MEMO_IMAGES`)
    are reused across targets.

    Args:
        base: the codec to control.
        scorer: an ML-CLIPSim scorer (or any callable, see :func:`control_rate`); or
        backbone / pretrained: build an :class:`~mlclipsim.metrics.MLCLIPSimScorer` on first use (neither:
            ML-CLIPSim's default encoder, the best installed one offline).
        targets: default operating points.
        ladder: the base codec's points to search (default its whole ladder).
        search: ``"bisect"`` or ``"exhaustive"``.
        scale: ``"raw"`` or ``"agreement"`` (targets as predicted machine agreement) for a scorer built here.
        max_codings: new codings per image and target (``search="bisect"``).
    """

    modifier = "mlclipsim"

    def __init__(self, base: Codec, scorer: Any = None, backbone: str | None = None, pretrained: Any = None,
                 targets: Sequence[float] = DEFAULT_TARGETS, ladder: Sequence[Point] | None = None,
                 search: str = "bisect", scale: str = "raw", max_codings: int = MAX_CODINGS) -> None:
        if search not in SEARCHES:
            raise ValueError(f"Unknown search {search!r}; choose one of {list(SEARCHES)}.")
        if scorer is not None and (backbone is not None or pretrained is not None or scale != "raw"):
            raise ValueError("Pass either scorer= or backbone=/pretrained=/scale=, not both.")
        self.base = base
        self.name = f"{base.name}@{self.modifier}"
        self.suffix = base.suffix
        self._scorer, self.backbone, self.pretrained, self.scale = scorer, backbone, pretrained, scale
        self._points = tuple(sorted(check_target(t) for t in targets))
        self.search_ladder = None if ladder is None else tuple(base.check_point(p) for p in ladder)
        self.search = search
        self.max_codings = int(max_codings)
        self._memos: OrderedDict[str, dict] = OrderedDict()

    @property
    def scorer(self) -> Any:
        if self._scorer is None:
            # lazy: mlclipsim.metrics (torchmetrics, matplotlib) would add ~2 s to `import mlclipsim.coding`,
            # which `mlclipsim codec compress|decompress` pay without scoring anything
            from mlclipsim.metrics import MLCLIPSimScorer

            self._scorer = MLCLIPSimScorer(self.backbone, pretrained=self.pretrained, scale=self.scale)
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
        if key not in self._memos:
            self._memos[key] = {}
            while len(self._memos) > MEMO_IMAGES:
                self._memos.popitem(last=False)
        self._memos.move_to_end(key)
        return self._memos[key]

    def _code(self, images: torch.Tensor, point: Point) -> CodedImages:
        results = [control_rate(self.base, image, float(point), self.scorer, self.search_ladder, self.search,
                                memo=self._memo_for(image), max_codings=self.max_codings) for image in images]
        reconstructions = torch.stack([r.reconstruction for r in results]).to(images.device)
        return CodedImages(reconstructions, [r.bits for r in results], [r.file for r in results],
                           tuple(r.summary() for r in results))


def _rate_controlled(base: Codec, **options: Any) -> RateControlledCodec:
    return RateControlledCodec(base, **options)


# ----------------------------------------------------------------------------- equal-slope allocation

SLOPE_SPAN: tuple[float, float] = (0.04, 0.9)
"""Ladder fractions of the first two probes of :func:`allocate_slope` (qualities 5 and 90 of a classic codec)."""
DEFAULT_SLOPES: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
"""Default operating points of :class:`SlopeControlledCodec`: quality per bit per pixel."""


def check_slope(slope: Any) -> float:
    """A slope (lambda, predicted quality per bit per pixel) >= 0; ValueError otherwise."""
    if isinstance(slope, bool):
        raise ValueError(f"A slope is a number >= 0 (quality per bit per pixel), got {slope!r}.")
    try:
        value = float(slope)
    except (TypeError, ValueError):
        raise ValueError(f"A slope is a number >= 0 (quality per bit per pixel), got {slope!r}.") from None
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"A slope must be finite and >= 0 (0: the best quality probed), got {slope!r}.")
    return value


@dataclass(frozen=True)
class SlopeResult:
    """What :func:`allocate_slope` chose for one image at one slope.

    Attributes:
        point: the chosen operating point; ``bits``, ``bpp``: its file size; ``score``: its ML-CLIPSim
            score; ``quality``: the predicted quality (``quality(score)``) the allocation maximised.
        slope: lambda; ``objective``: ``quality - slope * bpp`` of the chosen point (the largest of the probes).
        monotone: the probes' scores did not fall as the point rose (see :func:`allocate_slope`).
        evaluations: the probes (the same for every slope), in ladder order.
        reconstruction: (3,H,W) float32 in [0,1], the decoded chosen file; ``file``: its bytes.
        codings: probes of the image (at most ``max_codings``); ``reused``: how many came from the memo.
        seconds: wall time of this call.
    """

    point: Point
    bits: int
    bpp: float
    score: float
    quality: float
    slope: float
    objective: float
    monotone: bool
    evaluations: tuple[Evaluation, ...]
    reconstruction: torch.Tensor = field(repr=False)
    file: bytes = field(repr=False)
    codings: int = 0
    reused: int = 0
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {"point": self.point, "bits": self.bits, "bpp": self.bpp, "score": self.score, "quality": self.quality,
                "slope": self.slope, "objective": self.objective, "monotone": self.monotone, "codings": self.codings,
                "reused": self.reused, "seconds": self.seconds, "reached": None,
                "probes": [e.point for e in self.evaluations]}


def _monotone_fit(values: Sequence[float]) -> list[float]:
    """The closest non-decreasing sequence (least squares; scipy's isotonic regression)."""
    from scipy.optimize import isotonic_regression

    return [float(v) for v in isotonic_regression(list(values), increasing=True).x]


def _next_slope_probe(indices: list[int], log_rates: list[float], qualities: list[float]) -> int | None:
    """The next ladder index to code, or None when every gap between probes is closed.

    ``indices``: the probes so far, increasing; ``log_rates``, ``qualities``: their log bpp and predicted
    quality. Both are made non-decreasing over the ladder first (isotonic regression: a non-monotone ladder
    is read as its closest monotone one). The gap between neighbouring probes with the largest box
    (rise of log rate x rise of quality; ties: the lower one) is split where a monotone cubic (PCHIP)
    through the probes' log rates crosses the middle of the gap's log rates.
    """
    rates, values = _monotone_fit(log_rates), _monotone_fit(qualities)
    gaps = [(max(rates[k + 1] - rates[k], 0.0) * max(values[k + 1] - values[k], 0.0), -k)
            for k in range(len(indices) - 1) if indices[k + 1] - indices[k] >= 2]
    if not gaps:
        return None
    k = -max(gaps)[1]
    lo, hi = indices[k], indices[k + 1]
    if rates[k + 1] <= rates[k]:
        return (lo + hi) // 2
    from scipy.interpolate import PchipInterpolator

    # PCHIP needs strictly increasing abscissae (the probe indices are) and keeps the fitted rates' monotonicity
    curve = PchipInterpolator(indices, rates) if len(indices) > 2 else None
    middle = 0.5 * (rates[k] + rates[k + 1])
    inside = range(lo + 1, hi)
    if curve is None:
        return (lo + hi) // 2
    return min(inside, key=lambda i: (abs(float(curve(i)) - middle), i))


def allocate_slope(codec: Codec, image: torch.Tensor, slope: float, scorer: Any,
                   ladder: Sequence[Point] | None = None, quality: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   memo: dict | None = None, max_codings: int = MAX_CODINGS,
                   span: tuple[float, float] = SLOPE_SPAN) -> SlopeResult:
    """Equal-slope allocation: the probe of ``image`` maximising ``quality(score) - slope * bpp``.

    Across images, choosing each image's point at one common slope lambda maximises the summed predicted
    quality for the bits spent (a total budget spread by the marginal gain per bit), where one target per
    image spends whatever each image needs. Each image's choice depends only on itself and the slope.

    **Probes** (the same for every slope, so the codings are shared through ``memo``): the ladder's points
    at the fractions ``span`` (default: qualities 5 and 90 of a classic codec), then, until ``max_codings``
    (5) probes are made, a point inside the gap between neighbouring probes whose box (rise in log bpp x
    rise in predicted quality) is largest, where a monotone (PCHIP) interpolation of log bpp over the ladder
    crosses the gap's middle. The gaps are measured on the closest non-decreasing fit (isotonic regression)
    of the probes' log bpp and quality, so a **non-monotone ladder** (a higher quality with a smaller file,
    or a lower score; AVIF's identical files at neighbouring qualities) never sends the search backwards.

    **Choice**: among the probes, the largest measured ``quality - slope * bpp`` (ties: fewer bits, then the
    lower point). A point with more bits and no better quality than another probe is never chosen, however
    the ladder bends, and the chosen bits never rise with the slope (the probes do not depend on it).

    Args:
        codec, image, scorer, memo: as in :func:`control_rate` (``image`` (3,H,W) or (1,3,H,W) in [0,1]).
        slope: lambda >= 0, predicted quality per bit per pixel (0: the best quality probed).
        ladder: the points to probe, lowest rate first (default: ``codec.ladder``).
        quality: maps scores (N,) to predicted quality (N,), non-decreasing (e.g. an
            :class:`~mlclipsim.metrics.agreement_scale.AgreementScale`); None: the score itself.
        max_codings: probes per image (>= 1), shared by every slope.
        span: ladder fractions (low, high) of the first two probes, 0 <= low <= high <= 1.

    Raises:
        ValueError: bad slope, ladder, budget, span or image.
    """
    started = time.perf_counter()
    slope = check_slope(slope)
    if int(max_codings) < 1:
        raise ValueError(f"max_codings must be at least 1, got {max_codings!r}.")
    low, high = (float(f) for f in span)
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"span must be ladder fractions 0 <= low <= high <= 1, got {span!r}.")
    if image.ndim == 3:
        image = image[None]
    check_codec_images(image)
    if image.shape[0] != 1:
        raise ValueError(f"allocate_slope takes one image, (3,H,W) or (1,3,H,W), got shape {tuple(image.shape)}.")
    points = [codec.check_point(p) for p in (codec.ladder if ladder is None else ladder)]
    if not points:
        raise ValueError("The ladder to probe is empty.")
    if len(set(map(str, points))) != len(points):
        raise ValueError(f"The ladder repeats a point: {points}.")
    cache: dict = {} if memo is None else memo
    score_fn: Callable[[torch.Tensor], float] | None = cache.get("__score__")
    if score_fn is None:
        score_fn = _reference_and_score(scorer, image)
        cache["__score__"] = score_fn
    pixels = float(image.shape[-2] * image.shape[-1])
    new_codings = 0

    def predicted(score: float) -> float:
        if quality is None:
            return score
        return float(torch.as_tensor(quality(torch.tensor([score], dtype=torch.float64))).reshape(-1)[0])

    def evaluate(index: int) -> tuple[Evaluation, torch.Tensor, bytes]:
        nonlocal new_codings
        key = ("point", str(points[index]))
        if key not in cache:
            coded = codec.code(image, points[index])
            decoded = coded.reconstructions[:1]
            cache[key] = (Evaluation(points[index], int(coded.bits[0]), score_fn(decoded)), decoded[0],
                          coded.files[0])
            new_codings += 1
        return cache[key]

    top = len(points) - 1
    evaluated: dict[int, Evaluation] = {}
    for index in dict.fromkeys((round(low * top), round(high * top))):
        if len(evaluated) < max_codings:
            evaluated[index] = evaluate(index)[0]
    while len(evaluated) < max_codings:
        order = sorted(evaluated)
        index = _next_slope_probe(order, [math.log(max(evaluated[i].bits, 1) / pixels) for i in order],
                                  [predicted(evaluated[i].score) for i in order])
        if index is None:
            break
        evaluated[index] = evaluate(index)[0]
    order = sorted(evaluated)
    values = {i: predicted(evaluated[i].score) for i in order}
    objective = {i: values[i] - slope * evaluated[i].bits / pixels for i in order}
    chosen = max(order, key=lambda i: (objective[i], -evaluated[i].bits, -i))
    scores = [evaluated[i].score for i in order]
    evaluation, reconstruction, data = evaluate(chosen)
    return SlopeResult(evaluation.point, evaluation.bits, evaluation.bits / pixels, evaluation.score, values[chosen],
                       slope, objective[chosen], all(a <= b for a, b in zip(scores, scores[1:])),
                       tuple(evaluated[i] for i in order), reconstruction, data, len(order),
                       len(order) - new_codings, time.perf_counter() - started)


class SlopeControlledCodec(RateControlledCodec):
    """``BASE@mlclipsim-slope``: the base codec at, per image, the probe maximising quality - slope * bpp.

    Operating points are slopes lambda >= 0 (default :data:`DEFAULT_SLOPES`; larger: fewer bits), see
    :func:`allocate_slope`. Every image is probed once (at most ``max_codings`` codings, kept for every
    slope, up to :data:`MEMO_IMAGES` images); ``details`` report per image the chosen point, its score,
    predicted quality and objective, the probes and the time taken.

    Args:
        base, scorer, backbone, pretrained, ladder, scale, max_codings: as in :class:`RateControlledCodec`.
        slopes: default operating points.
        quality: scores (N,) -> predicted quality (N,), non-decreasing (e.g. an
            :class:`~mlclipsim.metrics.agreement_scale.AgreementScale` fitted on training photos); None: the
            scorer's own scale.
        span: ladder fractions of the first two probes (default :data:`SLOPE_SPAN`).
    """

    modifier = "mlclipsim-slope"

    def __init__(self, base: Codec, scorer: Any = None, backbone: str | None = None, pretrained: Any = None,
                 slopes: Sequence[float] = DEFAULT_SLOPES, ladder: Sequence[Point] | None = None, scale: str = "raw",
                 quality: Callable[[torch.Tensor], torch.Tensor] | None = None, max_codings: int = MAX_CODINGS,
                 span: tuple[float, float] = SLOPE_SPAN) -> None:
        super().__init__(base, scorer=scorer, backbone=backbone, pretrained=pretrained, ladder=ladder, scale=scale,
                         max_codings=max_codings)
        self._points = tuple(sorted((check_slope(s) for s in slopes), reverse=True))
        if not self._points:
            raise ValueError("Give at least one slope.")
        self.quality, self.span = quality, (float(span[0]), float(span[1]))

    def parse_point(self, text: str) -> Point:
        return check_slope(text.strip())

    def check_point(self, point: Point) -> Point:
        return check_slope(point)

    def rate_order(self, point: Point) -> float:
        return -float(point)

    def _code(self, images: torch.Tensor, point: Point) -> CodedImages:
        results = [allocate_slope(self.base, image, float(point), self.scorer, self.search_ladder,
                                  quality=self.quality, memo=self._memo_for(image), max_codings=self.max_codings,
                                  span=self.span) for image in images]
        reconstructions = torch.stack([r.reconstruction for r in results]).to(images.device)
        return CodedImages(reconstructions, [r.bits for r in results], [r.file for r in results],
                           tuple(r.summary() for r in results))


def _slope_controlled(base: Codec, **options: Any) -> SlopeControlledCodec:
    return SlopeControlledCodec(base, **options)


register_codec_modifier("mlclipsim-slope", _slope_controlled,
                        "the base codec at, per image, the probe maximising predicted quality - slope x bpp "
                        "(points = slopes >= 0, larger: fewer bits; at most 5 codings per image, shared by all slopes; "
                        "quality= maps scores to predicted quality)", overwrite=True)
register_codec_modifier("mlclipsim", _rate_controlled,
                        "the base codec at, per image, the cheapest quality whose ML-CLIPSim reaches the target "
                        "(points = targets in (0, 1]; scorer=/backbone= optional: default encoder; "
                        "scale='agreement' for predicted machine agreement)", overwrite=True)
