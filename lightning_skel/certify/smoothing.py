"""Randomized smoothing of a skeleton classifier (Cohen, Rosenfeld & Kolter, "Certified Adversarial
Robustness via Randomized Smoothing", ICML 2019; docs/METHOD.md section 8).

The smoothed classifier ``g(x) = argmax_c P(f(x + eps) = c)``, ``eps ~ N(0, sigma^2 I)`` on the valid entries
of the clip (padding frames and absent persons keep their zeros, as attacks leave them:
``skeleton.features.valid_mask``), is robust in L2 over those entries: if the top class has probability
``p_A >= 0.5``, ``g`` cannot change within radius ``sigma * Phi^-1(p_A)``. :class:`SmoothedClassifier`
estimates ``g`` by Monte Carlo as Cohen et al.'s ``PREDICT`` (a binomial test between the two top classes,
abstaining when it is not significant) and ``CERTIFY`` (the top class from ``n0`` samples, a one-sided
Clopper-Pearson lower bound on its probability from ``n`` fresh ones, abstaining below 0.5). Both hold with
probability at least ``1 - alpha`` over the noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from torch import Tensor, nn

from lightning_skel.skeleton.features import join_score, split_score, valid_mask
from lightning_skel.utils import check_params

ABSTAIN = -1  # the label of a clip on which the smoothed classifier abstains


def _is_int(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def min_samples(alpha: float, test: str = "certify") -> int:
    """The fewest noise samples with which anything can be certified (``test="certify"``: the one-sided
    Clopper-Pearson lower bound of ``n`` top-class votes out of ``n``, ``alpha ** (1 / n)``, exceeds 0.5) or
    predicted (``"predict"``: the two-sided binomial test of ``n`` votes against none, p-value
    ``2 * 0.5 ** n``, reaches ``alpha``), at level ``alpha`` in (0, 1).

    Example:
        >>> min_samples(0.001)  # 0.001 ** (1 / 10) = 0.501
        10
        >>> min_samples(0.001, "predict")  # 2 * 0.5 ** 11 = 0.00098
        11
    """
    if not (_is_number(alpha) and 0 < alpha < 1):
        raise ValueError(f"min_samples: alpha must be in (0, 1), got {alpha!r}")
    if test == "certify":
        n = max(1, math.floor(math.log2(1 / alpha)))
        while alpha ** (1 / n) <= 0.5:  # floating point may leave the formula's n one short
            n += 1
        return n
    if test == "predict":
        n = max(1, math.floor(math.log2(2 / alpha)))
        while 2 * 0.5**n > alpha:
            n += 1
        return n
    raise ValueError(f"min_samples: test must be 'certify' or 'predict', got {test!r}")


def check_smoothing_args(
    owner: str,
    sigma: float | None = None,
    batch: int | None = None,
    n0: int | None = None,
    n: int | None = None,
    alpha: float | None = None,
    test: str = "certify",
    what: str = "argument(s)",
) -> None:
    """One ``ValueError`` naming every bad argument of those given (``None`` is not checked): ``sigma > 0``
    metres, ``batch >= 1`` noisy copies per forward pass, ``n0 >= 1`` selection samples, ``alpha`` in (0, 1),
    and ``n`` at least :func:`min_samples` of ``alpha`` for ``test``; ``what`` names them in the message
    (``"setting(s)"`` for a config's keys).

    Example:
        >>> check_smoothing_args("demo", sigma=0.01, n=100, alpha=0.001)  # passes
        >>> check_smoothing_args("demo", sigma=0.0, n0=5)
        Traceback (most recent call last):
        ValueError: demo: invalid argument(s): sigma must be > 0 (...), got 0.0
    """
    alpha_ok = _is_number(alpha) and 0 < alpha < 1
    rules = {
        "sigma": (sigma, _is_number(sigma) and sigma > 0, "> 0 (the noise's standard deviation, metres)"),
        "batch": (batch, _is_int(batch) and batch >= 1, "an integer >= 1 (noisy copies per forward pass)"),
        "n0": (n0, _is_int(n0) and n0 >= 1, "an integer >= 1 (noise samples that select the top class)"),
        "alpha": (alpha, alpha_ok, "in (0, 1) (the probability that the answer is wrong)"),
    }  # fmt: skip
    rules = {k: rule for k, rule in rules.items() if rule[0] is not None}
    if n is not None:
        if alpha_ok:
            need = min_samples(alpha, test)
            why = (
                "with fewer samples even all of them in the top class leave its Clopper-Pearson lower bound "
                "at or below 0.5, so nothing can be certified"
                if test == "certify"
                else "with fewer samples the binomial test cannot reject a tie even when every sample agrees"
            )
            rules["n"] = (n, _is_int(n) and n >= need, f"an integer >= {need} at alpha={alpha:g} ({why})")
        else:
            rules["n"] = (n, _is_int(n) and n >= 1, "an integer >= 1")
    check_params(owner, rules, what)


def clopper_pearson_lower(count: np.ndarray | int, n: int, alpha: float) -> np.ndarray:
    """The one-sided ``(1 - alpha)`` Clopper-Pearson lower confidence bound on a binomial proportion from
    ``count`` successes of ``n`` trials: ``Beta(alpha; count, n - count + 1)``, 0 where ``count`` is 0.
    Cohen et al.'s ``proportion_confint(count, n, alpha=2 * alpha, method="beta")[0]``.

    Example:
        >>> round(float(clopper_pearson_lower(990, 1000, 0.001)), 4)
        0.976
        >>> clopper_pearson_lower(np.array([0, 500, 1000]), 1000, 0.001).round(3)
        array([0.   , 0.451, 0.993])
    """
    count = np.asarray(count, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        low = stats.beta.ppf(alpha, np.maximum(count, 1), n - count + 1)
    return np.where(count > 0, low, 0.0)


def binomial_p_value(top: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The two-sided p-value of the binomial test that the top class's ``top`` votes and the runner-up's
    ``second`` votes (``top >= second``) come from equal probabilities: ``scipy.stats.binomtest(top, top +
    second, 0.5).pvalue``, vectorised (the test is symmetric at 0.5: ``min(1, 2 P(X >= top))``).

    Example:
        >>> binomial_p_value(np.array([10, 6]), np.array([0, 4])).round(4)  # 10 to 0 is no tie
        array([0.002 , 0.7539])
    """
    top = np.asarray(top, dtype=np.float64)
    total = top + np.asarray(second, dtype=np.float64)
    return np.minimum(1.0, 2 * stats.binom.sf(top - 1, total, 0.5))


@dataclass
class Certificate:
    """What :meth:`SmoothedClassifier.certify` returns for N clips (tensors of shape ``(N,)``, on the device
    of the clips).

    Arguments:
        prediction: long, the top class, or :data:`ABSTAIN` (-1).
        radius: float, metres: the certified L2 radius over valid entries; NaN where abstaining.
        p_lower: float: the Clopper-Pearson lower bound on the top class's probability.
        count: long: votes for the selected class among the ``n`` estimation samples.
        selected: long: the class the ``n0`` selection samples chose (kept where abstaining).

    Example:

    >>> import torch
    >>> cert = Certificate(prediction=torch.tensor([2, ABSTAIN]), radius=torch.tensor([0.004, float("nan")]),
    ...                    p_lower=torch.tensor([0.9, 0.4]), count=torch.tensor([95, 40]),
    ...                    selected=torch.tensor([2, 1]))
    >>> cert.abstain
    tensor([False,  True])
    """

    prediction: Tensor  # long: the top class, or ABSTAIN (-1)
    radius: Tensor  # float, metres: the certified L2 radius over valid entries; NaN where abstaining
    p_lower: Tensor  # float: the Clopper-Pearson lower bound on the top class's probability
    count: Tensor  # long: votes for the selected class among the n estimation samples
    selected: Tensor  # long: the class the n0 selection samples chose (kept where abstaining)

    @property
    def abstain(self) -> Tensor:
        return self.prediction == ABSTAIN


class SmoothedClassifier:
    """The Gaussian smoothing of a classifier, after Cohen, Rosenfeld & Kolter (ICML 2019): its Monte-Carlo
    ``predict`` and ``certify``. Noise of standard deviation ``sigma`` is added to the coordinates of valid
    entries only (``valid_mask``: frames before ``lengths`` of present persons); padding frames, absent
    persons and a keypoint-score channel (a model with ``score_channel``) are passed on bit-identical.
    Noisy copies go through the model ``batch`` at a time, on the model's device, in eval mode, from a
    ``torch.Generator`` on that device seeded by ``seed``: the same call gives the same answer.

    Arguments:
        model: any classifier ``nn.Module`` of raw clips (a ``Classifier``, a ``ScoreFusion`` of several).
        sigma: the noise's standard deviation, in the clips' unit (metres for 3D data). Must be > 0.
        batch: noisy copies per forward pass (default 1000).

    Shape:
        - x: ``(N, C, T, V, M)`` (``(N, C + 1, T, V, M)`` with a score channel); lengths: ``(N,)``, default T.
        - output: ``(N,)`` labels (:data:`ABSTAIN` where abstaining), or a :class:`Certificate`.

    Example:

    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 25, 5))
    >>> x = torch.randn(4, 3, 8, 25, 1)
    >>> smooth = SmoothedClassifier(model, sigma=0.01, batch=50)
    >>> cert = smooth.certify(x, n0=10, n=50, alpha=0.01)  # lengths default T
    >>> cert.prediction.shape, cert.radius.shape, int(cert.count.max()) <= 50
    (torch.Size([4]), torch.Size([4]), True)
    >>> smooth.predict(x, n=50, alpha=0.01).shape
    torch.Size([4])
    """

    def __init__(self, model: nn.Module, sigma: float, batch: int = 1000) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"SmoothedClassifier: model must be an nn.Module, got {type(model).__name__}")
        check_smoothing_args("SmoothedClassifier", sigma=sigma, batch=batch)
        self.model, self.sigma, self.batch = model, float(sigma), int(batch)
        self.score_channel = bool(getattr(model, "score_channel", False))

    @property
    def device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def generator(self, seed: int) -> torch.Generator:
        """A generator on the model's device seeded by ``seed``."""
        return torch.Generator(device=self.device).manual_seed(int(seed))

    def _inputs(self, x: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor]:
        """Coordinates, score and validity mask of the clips, on the model's device, checked."""
        if x.dim() != 5:
            raise ValueError(f"SmoothedClassifier: x must be (N, C, T, V, M), got shape {tuple(x.shape)}")
        bad = ~torch.isfinite(x).flatten(1).all(1)
        if bool(bad.any()):
            clips = bad.nonzero().squeeze(1).tolist()
            raise ValueError(
                f"SmoothedClassifier: x has NaN or infinite coordinates in clip(s) {clips[:10]}: mark missing "
                "joints and absent persons with zeros"
            )
        x = x.to(self.device)
        coords, score = split_score(x, self.score_channel)
        lengths = None if lengths is None else lengths.to(self.device)
        return coords, score, valid_mask(coords, lengths)

    def noisy(
        self,
        coords: Tensor,
        mask: Tensor,
        clips: Tensor,
        generator: torch.Generator | None = None,
        score: Tensor | None = None,
    ) -> Tensor:
        """The model inputs of noisy copies of the clips ``clips (R,)`` (indices into ``coords (N, C, T, V,
        M)``, with its ``mask (N, 1, T, 1, M)`` and ``score``): ``coords[clips] + sigma * eps`` on valid
        entries, the clean values elsewhere, ``(R, C, T, V, M)`` (with the score appended where given).
        Differentiable in ``coords``."""
        base = coords[clips]
        eps = torch.randn(base.shape, generator=generator, device=base.device, dtype=base.dtype)
        out = torch.where(mask[clips], base + self.sigma * eps, base)
        return join_score(out, None if score is None else score[clips])

    @torch.no_grad()
    def counts(self, x: Tensor, lengths: Tensor | None, num: int, generator: torch.Generator) -> Tensor:
        """``(N, K)`` votes: how many of ``num`` noisy copies of each clip the model labels with each of its
        K classes. The N * num copies go through the model ``batch`` at a time, clips mixed in a batch."""
        coords, score, mask = self._inputs(x, lengths)
        n_clips = coords.shape[0]
        counts = None
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, n_clips * num, self.batch):
                rows = torch.arange(start, min(start + self.batch, n_clips * num), device=coords.device)
                clips = rows // num
                logits = self.model(self.noisy(coords, mask, clips, generator, score))
                if counts is None:
                    counts = torch.zeros(n_clips * logits.shape[1], dtype=torch.long, device=coords.device)
                pred = logits.argmax(1)
                counts.index_add_(0, clips * logits.shape[1] + pred, torch.ones_like(pred))
        finally:
            self.model.train(was_training)
        if counts is None:  # no clips: no class count to read from the model
            return torch.zeros(0, 0, dtype=torch.long, device=coords.device)
        return counts.view(n_clips, -1)

    def predict(
        self, x: Tensor, lengths: Tensor | None = None, n: int = 1000, alpha: float = 0.001, seed: int = 0
    ) -> Tensor:
        """Cohen et al.'s ``PREDICT``: the smoothed label of each clip from ``n`` noisy copies, or
        :data:`ABSTAIN` where the two-sided binomial test between the two most voted classes does not reject
        a tie at level ``alpha``. A returned label differs from the smoothed classifier's with probability
        at most ``alpha``.

        Arguments:
            x: clips ``(N, C, T, V, M)``; lengths: valid frames ``(N,)`` (default: all T).
            n: noise samples per clip (default 1000), at least ``min_samples(alpha, "predict")``.
            alpha: the test's level, in (0, 1) (default 0.001).
            seed: the noise generator's seed (default 0).

        Returns:
            ``(N,)`` long labels on ``x``'s device.
        """
        check_smoothing_args("SmoothedClassifier.predict", n=n, alpha=alpha, test="predict")
        counts = self.counts(x, lengths, int(n), self.generator(seed))
        if counts.shape[0] == 0:
            return torch.zeros(0, dtype=torch.long, device=x.device)
        # the two most voted classes (a one-class model has no runner-up: 0 votes)
        top = counts.topk(min(2, counts.shape[1]), dim=1)
        second = top.values[:, 1] if counts.shape[1] > 1 else torch.zeros_like(top.values[:, 0])
        p = binomial_p_value(top.values[:, 0].cpu().numpy(), second.cpu().numpy())
        abstain = torch.as_tensor(p > alpha, device=counts.device)
        return torch.where(abstain, ABSTAIN, top.indices[:, 0]).to(x.device)

    def certify(
        self,
        x: Tensor,
        lengths: Tensor | None = None,
        n0: int = 100,
        n: int = 1000,
        alpha: float = 0.001,
        seed: int = 0,
    ) -> Certificate:
        """Cohen et al.'s ``CERTIFY``: the class most voted by ``n0`` noisy copies of each clip, the
        one-sided Clopper-Pearson lower bound ``p_lower`` on its probability from ``n`` fresh copies, and the
        certified radius ``sigma * Phi^-1(p_lower)``, or an abstention where ``p_lower < 0.5``. With
        probability at least ``1 - alpha``, the smoothed classifier gives the returned label to every
        ``x + delta`` with ``delta`` zero off the valid entries and ``|delta|_2`` below the radius.

        Arguments:
            x: clips ``(N, C, T, V, M)``; lengths: valid frames ``(N,)`` (default: all T).
            n0: selection samples per clip (default 100), >= 1.
            n: estimation samples per clip (default 1000), at least ``min_samples(alpha)``.
            alpha: the bound's level, in (0, 1) (default 0.001).
            seed: the noise generator's seed (default 0); the selection and estimation draws follow each other.

        Returns:
            a :class:`Certificate` of ``(N,)`` tensors on ``x``'s device (radius in ``x``'s unit).
        """
        check_smoothing_args("SmoothedClassifier.certify", n0=n0, n=n, alpha=alpha)
        if x.shape[0] == 0:
            empty = torch.zeros(0, device=x.device)
            return Certificate(empty.long(), empty.double(), empty.double(), empty.long(), empty.long())
        generator = self.generator(seed)
        selected = self.counts(x, lengths, int(n0), generator).argmax(1)
        count = self.counts(x, lengths, int(n), generator).gather(1, selected[:, None]).squeeze(1)
        p_lower = clopper_pearson_lower(count.cpu().numpy(), int(n), float(alpha))
        abstain = p_lower < 0.5
        radius = np.where(abstain, np.nan, self.sigma * stats.norm.ppf(np.clip(p_lower, 0.5, 1.0)))
        dev = x.device
        abstain = torch.as_tensor(abstain, device=selected.device)
        return Certificate(
            prediction=torch.where(abstain, ABSTAIN, selected).to(dev),
            radius=torch.as_tensor(radius, dtype=torch.float64, device=dev),
            p_lower=torch.as_tensor(p_lower, dtype=torch.float64, device=dev),
            count=count.to(dev),
            selected=selected.to(dev),
        )


def certified_accuracy(
    prediction: Tensor | np.ndarray,
    y: Tensor | np.ndarray,
    radius: Tensor | np.ndarray,
    radii: Sequence[float],
) -> np.ndarray:
    """Cohen et al.'s certified accuracy at each of ``radii``: the fraction of clips whose certified label
    is the true one with a certified radius of at least that size (abstentions count as wrong). ``radius``
    in the unit of ``radii``; NaN (an abstention) is below every radius. Of a :class:`Certificate` ``cert``,
    with radii in millimetres: ``certified_accuracy(cert.prediction, y, cert.radius * 1000, radii)``.

    Example:
        >>> prediction, y = torch.tensor([0, 1, ABSTAIN, 3]), torch.tensor([0, 1, 2, 0])
        >>> radius_mm = torch.tensor([4.0, 12.0, float("nan"), 20.0])  # clip 3 certified, but wrong
        >>> certified_accuracy(prediction, y, radius_mm, [0, 5, 10])
        array([0.5 , 0.25, 0.25])
    """
    pred, y, r = (np.asarray(torch.as_tensor(v).cpu()) for v in (prediction, y, radius))
    right = (pred == y) & (pred != ABSTAIN)
    if right.size == 0:
        return np.full(len(radii), np.nan)
    with np.errstate(invalid="ignore"):
        return (right[None, :] & (r[None, :] >= np.asarray(radii, dtype=np.float64)[:, None])).mean(1)


def certified_accuracy_curve(
    prediction: Tensor | np.ndarray, y: Tensor | np.ndarray, radius: Tensor | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Certified accuracy as a function of the radius, exactly: the radii where it steps down (0, then each
    distinct radius certified on a correct clip, ascending) and the accuracy at each (:func:`certified_accuracy`:
    clips certified at least that far). Between two of them it keeps the value of the larger one: plot it
    with ``ax.step(r, acc, where="pre")``.

    Example:
        >>> prediction, y = torch.tensor([0, 1, ABSTAIN, 3]), torch.tensor([0, 1, 2, 0])
        >>> r, acc = certified_accuracy_curve(prediction, y, torch.tensor([4.0, 12.0, float("nan"), 20.0]))
        >>> r, acc
        (array([ 0.,  4., 12.]), array([0.5 , 0.5 , 0.25]))
    """
    pred, y, r = (np.asarray(torch.as_tensor(v).cpu()) for v in (prediction, y, radius))
    right = (pred == y) & (pred != ABSTAIN)
    radii = np.unique(np.concatenate([[0.0], r[right & np.isfinite(r)]]))
    return radii, certified_accuracy(pred, y, r, radii)
