import copy
import functools
import inspect
import itertools
import re
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from lightning_skel.attacks import build_attack, list_attacks
from lightning_skel.attacks.base import ATTACKS, BatchAdam, CSearch, Rows, margin_loss
from lightning_skel.attacks.distances import DynamicDistance, Kinematics
from lightning_skel.attacks.metrics import attack_metrics
from lightning_skel.data.synthetic import generate
from lightning_skel.skeleton import features as F
from lightning_skel.skeleton import get_layout

FAST = {
    "admm": {"max_iter": 30, "c": 5.0, "c_growth": 1.5, "lr": 0.005},
    "smart": {"steps": 60},
    "pgd": {"eps": 0.05, "steps": 20},
    "ifgsm": {"eps": 0.05, "steps": 20},
    "cw": {"steps": 60, "c": 5.0, "lr": 0.005},
    "zheng2020": {"max_iter": 6},
    "apgd": {"eps": 0.05, "n_iter": 10},
    "square": {"eps": 0.05, "n_queries": 60},
    "autoattack": {"eps": 0.05, "n_iter": 5, "n_target_classes": 2, "n_queries": 30},
    "mifgsm": {"eps": 0.05, "steps": 10},
}
GRADIENT_FREE = {"square"}  # attacks that only run the model forward: their clips spend forward passes


class TinyNet(nn.Module):
    """An MLP on normalised clips, with dropout and batch norm so that eval mode matters."""

    def __init__(self, shape, num_classes):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(int(torch.tensor(shape).prod()), 64), nn.BatchNorm1d(64), nn.ReLU(),
            nn.Dropout(0.2), nn.Linear(64, num_classes),
        )  # fmt: skip
        self.seen_training = []

    def forward(self, x):
        self.seen_training.append(self.training)
        return self.net(F.normalize(x, "ntu25"))


class PureNet(nn.Module):
    """A TinyNet's network without its record of modes: torch.compile guards on that list's length, so it
    would compile the classifier's check again on every call."""

    def __init__(self, tiny: TinyNet) -> None:
        super().__init__()
        self.net = tiny.net

    def forward(self, x):
        return self.net(F.normalize(x, "ntu25"))


@pytest.fixture(scope="module")
def victim():
    torch.manual_seed(0)
    d = generate(4, seed=0, frames=16, num_subjects=2)
    x, y = torch.as_tensor(d["x"]), torch.as_tensor(d["y"])
    lengths = torch.as_tensor(d["lengths"])
    x = x * F.valid_mask(x, lengths)
    model = TinyNet(x.shape[1:], 12)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        keep = model(x).argmax(1) == y
    assert keep.sum() >= 30
    model.seen_training.clear()
    return model, x[keep][:16], y[keep][:16], lengths[keep][:16]


def test_registry():
    assert {"admm", "smart", "pgd", "ifgsm", "cw"} <= set(list_attacks())
    with pytest.raises(KeyError, match="unknown attack 'fgsm'; known: .*admm"):
        build_attack("fgsm", nn.Linear(1, 1), "ntu25")


@pytest.mark.parametrize("name", list_attacks())
def test_every_argument_is_documented(name):
    """help() on an attack lists all its arguments: every parameter of its ``__init__`` but self, model and
    layout is named in the class's own docstring."""
    cls = ATTACKS.get(name)
    doc = cls.__doc__ or ""
    params = [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name not in ("self", "model", "layout") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    assert params
    missing = [p for p in params if not re.search(rf"(?<![\w.]){re.escape(p)}(?!\w)", doc)]
    assert not missing, f"{cls.__name__}'s docstring does not name {missing}"


@dataclass(eq=False)
class ToyRows(Rows):
    delta: torch.Tensor
    opt: BatchAdam
    clean: Kinematics
    target: torch.Tensor | None


def toy_rows(samples, x):
    k = len(samples)
    return ToyRows(
        sample=samples, c=torch.full((k,), 1.0), fooled=torch.zeros(k, dtype=torch.bool),
        delta=x[samples] * 2, opt=BatchAdam(x[samples].clone(), 0.1),
        clean=Kinematics(x[samples], get_layout("ntu25"), torch.ones(k, 1, 2, 1, 1, dtype=torch.bool)),
        target=None,
    )  # fmt: skip


def test_rows_grow_and_shrink_as_a_whole():
    """Rows appends and keeps every field together (tensors, an optimiser's state, kinematics and their
    store), None staying None: each row stays its sample's."""
    x = torch.arange(4 * 3 * 2 * 25, dtype=torch.float64).view(4, 3, 2, 25, 1)
    rows = toy_rows(torch.tensor([2]), x)
    rows.opt.step(slice(None), torch.ones_like(rows.delta))
    assert rows.clean.bone_lengths.shape == (1, 2, 24, 1)  # stored now
    rows.append(toy_rows(torch.tensor([0, 3]), x))
    assert len(rows) == 3 and rows.sample.tolist() == [2, 0, 3]
    assert rows.opt.t.tolist() == [1.0, 0.0, 0.0] and rows.opt.param.shape == (3, 3, 2, 25, 1)
    assert "bone_lengths" not in rows.clean.values  # the new rows had not stored it
    rows.keep(torch.tensor([False, True, True]))
    assert rows.sample.tolist() == [0, 3] and rows.target is None
    for i, sample in enumerate(rows.sample.tolist()):
        assert torch.equal(rows.delta[i], 2 * x[sample])
        assert torch.equal(rows.opt.param[i], x[sample]) and rows.opt.t[i] == 0
        assert torch.equal(rows.clean.x[i], x[sample])


def test_c_search_brackets_hand_computed():
    """C&W's search over c: a fooled run's c becomes the upper end, an unfooled one's the lower end; the
    next c is the midpoint, or 10x while never fooled, clamped to c_max; samples with rounds left return."""
    x = torch.zeros(3, dtype=torch.float64)
    search = CSearch(3, 1.0, rounds=2, like=x, c_max=8.0)
    again = search.end(torch.tensor([0, 1]), torch.tensor([True, False]))
    assert again.tolist() == [0, 1]
    assert search.start.tolist() == [0.5, 8.0, 1.0]  # 1/2; 10 clamped to c_max
    assert search.lo.tolist() == [0.0, 1.0, 0.0] and search.hi.tolist() == [1.0, float("inf"), float("inf")]
    assert search.end(torch.tensor([1, 2]), torch.tensor([True, True])).tolist() == [2]
    assert search.start.tolist() == [0.5, 4.5, 0.5]  # (1 + 8) / 2
    assert search.start.dtype == torch.float64


def test_margin_loss_hand_computed():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0]])
    y = torch.tensor([0, 0])
    assert margin_loss(logits, y, None, kappa=0.5).tolist() == [1.5, 0.0]  # 3-2+0.5, relu(0-5+0.5)
    t = torch.tensor([1, 1])
    assert margin_loss(logits, y, t, kappa=0.0).tolist() == [2.0, 0.0]  # max other 3 - 1; 1 - 5 < 0


def test_batch_adam_updates_only_given_rows():
    p = torch.zeros(3, 2)
    opt = BatchAdam(p, lr=0.1)
    opt.step(torch.tensor([0, 2]), torch.ones(2, 2))
    assert p[1].abs().max() == 0
    torch.testing.assert_close(p[0], torch.full((2,), -0.1))  # first Adam step moves by lr
    assert opt.t.tolist() == [1.0, 0.0, 1.0]


def test_result_labels_only_what_the_attack_did_not(victim):
    """An attack passes the labels it already has; the final forward pass labels the others only."""
    model, x, y, _ = victim
    attack = build_attack("pgd", model, "ntu25")
    with torch.no_grad():
        truth = model(x).argmax(1)
    seen = []
    hook = model.register_forward_pre_hook(lambda m, args: seen.append(len(args[0])))
    try:
        known = torch.where(torch.arange(len(y)) % 3 == 0, -1, truth)
        res = attack.result(x, y, None, torch.zeros_like(y), torch.full_like(y, 2), pred=known)
        assert seen == [int((known < 0).sum())]
        assert torch.equal(res.forward_evals, 2 + (known < 0).long())  # the labelling pass where it ran
        seen.clear()
        assert torch.equal(attack.result(x, y, None, torch.zeros_like(y), pred=truth).forward_evals, 0 * y)
        assert seen == []
    finally:
        hook.remove()
    assert torch.equal(res.pred_adv, truth)
    assert torch.equal(res.success, truth != y)


@pytest.mark.parametrize("name", ["admm", "smart", "pgd", "ifgsm", "cw"])
def test_untargeted_attack_flips_labels(victim, name):
    model, x, y, lengths = victim
    res = build_attack(name, model, "ntu25", **FAST[name])(x, y, lengths)
    with torch.no_grad():
        pred = model(res.x_adv).argmax(1)
    assert torch.equal(pred, res.pred_adv)
    assert torch.equal(res.success, pred != y)
    assert res.success.float().mean() >= 0.75, f"{name}: {res.success.float().mean():.2f}"
    assert (res.grad_evals > 0).all()


@pytest.mark.parametrize("name", ["admm", "pgd", "cw"])
def test_targeted_attack_reaches_targets(victim, name):
    model, x, y, lengths = victim
    target = (y + 3) % 12
    kwargs = {**FAST[name], "targeted": True}
    if name == "pgd":
        kwargs.update(steps=60)
    res = build_attack(name, model, "ntu25", **kwargs)(x, y, lengths, target=target)
    assert (res.pred_adv[res.success] == target[res.success]).all()
    assert res.success.float().mean() >= 0.75


@pytest.mark.parametrize("name", list_attacks())
def test_attack_leaves_model_state_alone(victim, name):
    model, x, y, lengths = victim
    model.train()
    params = {k: v.clone() for k, v in model.state_dict().items()}
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    model.seen_training.clear()
    build_attack(name, model, "ntu25", **FAST[name])(x[:4], y[:4], lengths[:4])
    assert model.training  # restored
    assert not any(model.seen_training)  # eval mode throughout the attack
    for k, v in model.state_dict().items():
        assert torch.equal(v, params[k]), k  # BN running stats included
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in model.parameters())
    model.eval()
    for p in model.parameters():
        p.grad = None


@pytest.mark.parametrize("name", list_attacks())
def test_padding_and_absent_persons_bit_identical(victim, name):
    model, x, y, lengths = victim
    x = x.clone()
    lengths = lengths.clone()
    lengths[0] = 10
    x[0, :, 10:] = 0
    mask = F.valid_mask(x, lengths)
    res = build_attack(name, model, "ntu25", **FAST[name])(x, y, lengths)
    assert torch.equal(res.x_adv[~mask.expand_as(x)], x[~mask.expand_as(x)])
    assert (res.x_adv != x).any()


class RowWise(nn.Module):
    """A classifier evaluated one clip at a time: its logits for a clip are then the same bits whatever the
    clip's batch mates. A network on a batch is not: the BLAS picks its kernels (and so the order of a
    dot product's sums) by the matrix shape, the CPU and the kernel dispatch, and Adam's steps magnify
    those last bits (up to 2e-3 m on 30 outer steps), so only with the network's rounding fixed does
    comparing a batch with its clips alone test the attack's own claim."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return torch.cat([self.net(clip) for clip in x.split(1)])


@pytest.mark.numerics
@pytest.mark.parametrize("patience", [None, 1])
def test_admm_batched_equals_per_sample(victim, patience):
    """Attacking a batch gives each clip exactly what attacking it alone gives; with patience, clips finish
    at different outer steps and the batch's state is compacted to the remaining clips on the way. The
    attack's own arithmetic is elementwise or per clip (and the layout's difference matrices hold 0 and
    +-1), so with a classifier whose rounding does not depend on the batch the results are bit-identical:
    any coupling of a clip to its batch mates (shared step sizes, a batch-wide reduction, rows mixed up in
    compaction) fails this test."""
    model, x, y, lengths = victim
    model, x = RowWise(copy.deepcopy(model).double()).eval(), x.double()
    attack = build_attack("admm", model, "ntu25", **FAST["admm"], patience=patience)
    batch = attack(x[:6], y[:6], lengths[:6])
    if patience:
        assert len(set(batch.iterations.tolist())) > 1
    for i in range(6):
        single = attack(x[i : i + 1], y[i : i + 1], lengths[i : i + 1])
        assert torch.equal(single.x_adv[0], batch.x_adv[i])
        assert single.success.item() == batch.success[i].item()
        assert single.grad_evals.item() == batch.grad_evals[i].item()
        assert single.forward_evals.item() == batch.forward_evals[i].item()
        assert torch.equal(single.extras["distance"][0], batch.extras["distance"][i])


@pytest.mark.numerics
@pytest.mark.parametrize("search", [1, 2])
def test_admm_streamed_equals_per_sample(victim, search):
    """With at most 2 rows in flight, the 6 clips (and with a search over c, each clip's second run) wait
    for a row and each still gets what attacking it alone gives."""
    model, x, y, lengths = victim
    model, x = RowWise(copy.deepcopy(model).double()).eval(), x.double()
    kwargs = {**FAST["admm"], "patience": 1, "binary_search_steps": search}
    streamed = build_attack("admm", model, "ntu25", **kwargs, max_rows=2)(x[:6], y[:6], lengths[:6])
    alone = build_attack("admm", model, "ntu25", **kwargs)
    for i in range(6):
        single = alone(x[i : i + 1], y[i : i + 1], lengths[i : i + 1])
        assert torch.equal(single.x_adv[0], streamed.x_adv[i])
        assert single.grad_evals.item() == streamed.grad_evals[i].item()
        assert single.iterations.item() == streamed.iterations[i].item()
        assert single.success.item() == streamed.success[i].item()
    assert streamed.iterations.sum() > 30 * search  # the stream really ran several runs through 2 rows


@pytest.mark.parametrize(
    ("emotion_every", "backend"),
    [
        (None, "eager"),
        (1, "eager"),
        (5, "eager"),
        pytest.param(None, "inductor", marks=pytest.mark.slow),
    ],
)
def test_admm_compiled_steps_equal_eager(victim, monkeypatch, emotion_every, backend):
    """``compile=True`` runs the delta steps, the z steps, the candidates' distances and the classifier's
    candidate check through torch.compile, each as one graph (no break: the distance terms take every row,
    with no branch on the data), with the emotion term (exact, or linearised over 5 z steps) making as many
    recognizer passes as eagerly; in float64 the attack ends where the eager one does, clip by clip, to
    within a tenth of a micrometre (inductor's fused kernels round the sums in another order, and Adam's
    first steps magnify that). Later attack instances reuse the graphs. The default run captures the graphs
    as for inductor and runs them with eager kernels: inductor's
    functionalisation and code generation take minutes on two cores (the slow case; on UTD-MHAD,
    benchmarks/attack_utd.py's ``_compiled`` configurations compare the compiled attacks' evaluations and
    success rates with the eager ones', docs/RESULTS.md)."""
    from torch._dynamo.utils import counters

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=backend))
    model, x, y, lengths = victim
    model, x = PureNet(copy.deepcopy(model)).double().eval(), x.double()
    kwargs = {**FAST["admm"], "max_iter": 6, "early_stop": False, "weights": {"l2": 0.5}}
    if emotion_every is not None:
        kwargs.update(weights={"emotion": 1.0}, emotion_every=emotion_every)
    runs, calls = {}, {}
    for compiled in (False, True):
        emotion = CountingEmotion(x.shape[1:]).double() if emotion_every else None
        torch._dynamo.reset()
        counters.clear()
        attack = build_attack("admm", model, "ntu25", **kwargs, emotion_model=emotion, compile=compiled)
        runs[compiled] = attack(x[:4], y[:4], lengths[:4])
        calls[compiled] = emotion.calls if emotion else 0
    assert counters["stats"]["unique_graphs"] >= 4  # the three steps and the classifier's check
    assert not counters["graph_break"]
    assert calls[True] == calls[False]
    torch.testing.assert_close(runs[True].x_adv, runs[False].x_adv, atol=1e-7, rtol=0)
    for key in ("grad_evals", "success"):
        assert getattr(runs[True], key).tolist() == getattr(runs[False], key).tolist()
    torch.testing.assert_close(runs[True].extras["distance"], runs[False].extras["distance"])
    # graphs shared by every attack on the layout: one for the first number of rows (4 here: all finish
    # together), then, at the first other number, one for any number (torch.compile's automatic dynamic
    # shapes) and one for a single row: once another instance on 3 other clips has compiled those (and the
    # check has labelled one row), a third on 2 compiles nothing new
    graphs = []
    for rows in (slice(4, 7), slice(7, 9)):
        emotion = CountingEmotion(x.shape[1:]).double() if emotion_every else None
        attack = build_attack("admm", model, "ntu25", **kwargs, emotion_model=emotion, compile=True)
        attack(x[rows], y[rows], lengths[rows])
        with torch.no_grad():
            attack._labels(x[rows][:1].clone())
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[1] == graphs[0]
    with pytest.raises(ValueError, match="compile must be true or false, got 'auto'"):
        build_attack("admm", model, "ntu25", compile="auto")


class Rounded(nn.Module):
    """A stand-in for a compiled classifier whose logits round differently: the eager logits plus ``eps``
    on every class but the top one, which flips the label of every clip whose two top logits are closer."""

    def __init__(self, model: nn.Module, eps: float) -> None:
        super().__init__()
        self.model, self.eps = model, eps

    def forward(self, x):
        logits = self.model(x)
        return logits + self.eps * (logits < logits.amax(1, keepdim=True))


def test_admm_compiled_check_labels_are_the_eager_labels(monkeypatch):
    """With ``compile=True`` the candidates' check runs the compiled classifier, and a label whose two top
    logits lie within CHECK_TOLERANCE (relative to 1 + |top logit|) is taken from the classifier itself:
    rounding that flips narrow verdicts changes no label, the confirmed clips count two forward passes and
    the others one; clear verdicts take the compiled one alone."""
    from lightning_skel.attacks import admm

    model = nn.Linear(3, 3, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.eye(3))
    # logits = inputs: gaps 2.0, 1e-3, 0.5 and 1e-6 (tolerance: 1e-2 * (1 + top))
    cand = torch.tensor([[3.0, 1.0, 0.0], [1.0, 1.001, 0.0], [0.0, 0.5, 1.0], [2.0, 0.0, 2.000001]]).double()
    monkeypatch.setattr(torch, "compile", lambda m, **kwargs: Rounded(m, eps=0.004))
    attack = admm.ADMMAttack(model, "ntu25", compile=True)
    assert admm.CHECK_TOLERANCE == 1e-2
    pred, passes = attack._labels(cand)
    assert pred.tolist() == model(cand).argmax(1).tolist() == [0, 1, 2, 2]
    assert passes.tolist() == [1, 2, 1, 2]
    # the stand-in does flip the narrow ones: without the confirmation two labels would be wrong
    assert Rounded(model, eps=0.004)(cand).argmax(1).tolist() == [0, 0, 2, 0]
    # rows not checked stay unlabelled and count no pass
    ok, pred, passes = attack._fooled(
        cand, torch.tensor([0, 0, 0, 0]), None, torch.tensor([1, 1, 0, 1]).bool()
    )
    assert pred.tolist() == [0, 1, -1, 2] and passes.tolist() == [1, 2, 0, 2]
    assert ok.tolist() == [False, True, False, True]
    # eagerly there is one pass per checked clip, whatever the gap
    pred, passes = admm.ADMMAttack(model, "ntu25")._labels(cand)
    assert pred.tolist() == [0, 1, 2, 2] and passes.tolist() == [1, 1, 1, 1]


def test_admm_stream_keeps_rows_full(victim):
    """The classifier's gradient passes see exactly `max_rows` clips while clips wait, then the last rows
    drain; every clip's evaluations are accounted for."""
    model, x, y, lengths = victim
    sizes = []

    def record(module, args):
        if torch.is_grad_enabled():
            sizes.append(args[0].shape[0])

    handle = model.register_forward_pre_hook(record)
    try:
        res = build_attack("admm", model, "ntu25", **FAST["admm"], patience=1, max_rows=5)(x, y, lengths)
    finally:
        handle.remove()
    assert max(sizes) == 5
    drop = next(i for i, s in enumerate(sizes) if s < 5)
    assert all(a >= b for a, b in itertools.pairwise(sizes[drop:]))  # no refill once the queue is empty
    assert (res.grad_evals > 0).all()  # 16 clips through 5 rows: each waiting clip got a row
    assert sum(sizes) == int(res.grad_evals.sum())
    for bad in (0, "all"):
        with pytest.raises(ValueError, match="max_rows must be >= 1, 'auto' or null"):
            build_attack("admm", model, "ntu25", max_rows=bad)


def test_admm_auto_rows_follow_the_device(victim):
    """``max_rows="auto"`` (the config's default) is 32 rows on a CPU and 256 on a GPU; ints and null are
    taken as given, whatever the device."""
    model = victim[0]
    auto = build_attack("admm", model, "ntu25", max_rows="auto")
    assert auto.rows_for(torch.device("cpu")) == 32
    assert auto.rows_for(torch.device("cuda", 0)) == 256
    assert build_attack("admm", model, "ntu25", max_rows=7).rows_for(torch.device("cuda")) == 7
    assert build_attack("admm", model, "ntu25").rows_for(torch.device("cpu")) is None


def test_admm_patience_stops_fooled_samples(victim):
    """With patience 1 and an improvement no step can make (more than 100 % of D), a sample stops one outer
    step after it is first fooled; without patience it runs on."""
    model, x, y, lengths = victim
    kwargs = {**FAST["admm"], "delta_steps": 2}
    stopped = build_attack("admm", model, "ntu25", patience=1, min_improvement=1.0, **kwargs)(x, y, lengths)
    ran_on = build_attack("admm", model, "ntu25", **kwargs)(x, y, lengths)
    ok = stopped.success
    assert ok.sum() >= 4
    first = stopped.extras["grad_evals_to_success"]
    early = ok & (first + 2 < kwargs["max_iter"] * 2)  # fooled with a step to spare
    assert early.any()
    assert torch.equal(stopped.grad_evals[early], first[early] + 2)
    assert (ran_on.grad_evals[early] > stopped.grad_evals[early]).all()
    with pytest.raises(ValueError, match="patience must be >= 1 or null"):
        build_attack("admm", model, "ntu25", patience=0)


def test_pgd_kl_loss_moves_the_prediction_away_from_the_clean_one(victim):
    """``loss="kl"`` (TRADES' inner maximisation) raises KL(f(x) || f(x')) inside the ball, with no label."""
    model, x, y, lengths = victim
    res = build_attack("pgd", model, "ntu25", eps=0.02, steps=10, loss="kl")(x, y, lengths)
    assert (res.x_adv - x).abs().max() <= 0.02 + 1e-6
    with torch.no_grad():
        clean = model(x).softmax(1)
        kl = torch.nn.functional.kl_div(model(res.x_adv).log_softmax(1), clean, reduction="batchmean")
        kl_random = torch.nn.functional.kl_div(
            model(build_attack("pgd", model, "ntu25", eps=0.02, steps=1, alpha=1e-12, loss="kl")(x, y, lengths)
                  .x_adv).log_softmax(1), clean, reduction="batchmean",
        )  # fmt: skip
    assert kl > 10 * kl_random  # far beyond the random start alone
    with pytest.raises(ValueError, match="loss must be one of"):
        build_attack("pgd", model, "ntu25", loss="hinge")
    with pytest.raises(
        ValueError, match=r"loss must be one of \('ce', 'kl'\) \('kl' untargeted only\), got 'kl'"
    ):
        build_attack("pgd", model, "ntu25", loss="kl", targeted=True)


def test_admm_keeps_motion_closer_than_pgd(victim):
    """The dynamic distance keeps bones and angles: far smaller changes than PGD at a similar size."""
    model, x, y, lengths = victim
    from lightning_skel.attacks.metrics import per_sample_metrics

    admm = build_attack("admm", model, "ntu25", **FAST["admm"])(x, y, lengths)
    pgd = build_attack("pgd", model, "ntu25", eps=0.02, steps=30)(x, y, lengths)
    both = admm.success & pgd.success
    assert both.sum() >= 4
    ma = per_sample_metrics(x[both], admm.x_adv[both], lengths[both], "ntu25")
    mp = per_sample_metrics(x[both], pgd.x_adv[both], lengths[both], "ntu25")
    ratio_bone = (ma["delta_bone"] / ma["rms_mm"]).mean() / (mp["delta_bone"] / mp["rms_mm"]).mean()
    assert ratio_bone < 0.5


@pytest.mark.parametrize("term", ["bone", "angle", "speed", "l2"])
def test_single_term_ablation(victim, term):
    """Every weight at 0 but one: the attack's distance is exactly that term."""
    model, x, _, lengths = victim
    weights = {k: (1.0 if k == term else 0.0) for k in ("bone", "angle", "speed", "emotion", "l2")}
    attack = build_attack("admm", model, "ntu25", weights=weights, max_iter=3)
    assert attack.distance.active == [term]
    mask = F.valid_mask(x, lengths)
    adv = x + 0.01 * torch.randn_like(x) * mask
    single = DynamicDistance("ntu25", weights=weights)
    total, parts = attack.distance(attack.distance.kinematics(x, mask), attack.distance.kinematics(adv, mask))
    assert list(parts) == [term]
    torch.testing.assert_close(
        total, single.terms[term](single.kinematics(x, mask), single.kinematics(adv, mask))
    )


class CountingEmotion(nn.Module):
    """A stand-in emotion recognizer: fixed random features of the clip, counting its forward passes."""

    def __init__(self, shape):
        super().__init__()
        torch.manual_seed(1)
        self.proj = nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(shape).prod()), 16), nn.Tanh())
        self.calls = 0

    def forward_features(self, x):
        self.calls += 1
        return self.proj(x * 10)


@pytest.mark.parametrize(("every", "per_outer_step"), [(1, 5 + 1), (5, 1)])
def test_admm_emotion_evaluations_per_outer_step(victim, every, per_outer_step):
    """Exact (every z step): phi runs for each of the 5 z steps and the candidate; linearised over the z
    block (emotion_every = z_steps): once per outer step, at the candidate, whose gradient starts the next
    z block. Plus one pass over the clean clips per attack."""
    model, x, y, lengths = victim
    emotion = CountingEmotion(x.shape[1:])
    attack = build_attack("admm", model, "ntu25", emotion_model=emotion, weights={"emotion": 1.0},
                          emotion_every=every, max_iter=3, early_stop=False)  # fmt: skip
    attack(x, y, lengths)
    assert emotion.calls == 1 + 3 * per_outer_step


@pytest.mark.parametrize(("every", "weight"), [(1, 50.0), (2, 50.0), (5, 5.0)])
def test_admm_emotion_term_keeps_emotion_features(victim, every, weight):
    """With the emotion term (exact, or linearised over 2 or 5 z steps) the fooling clips' phi stays closer
    to the clean one. (Linearised over the whole z block at weight 50 the stale gradient overshoots on this
    toy recognizer: the option's trade-off, documented with it.)"""
    model, x, y, lengths = victim
    emotion = CountingEmotion(x.shape[1:])
    kwargs = {**FAST["admm"], "emotion_model": emotion, "emotion_every": every, "early_stop": False}
    runs = {
        w: build_attack("admm", model, "ntu25", weights={"emotion": w}, **kwargs)(x, y, lengths)
        for w in (0.0, weight)
    }
    with torch.no_grad():
        d = {
            w: (emotion.forward_features(r.x_adv) - emotion.forward_features(x)).pow(2).mean(1)
            for w, r in runs.items()
        }
    ok = runs[0.0].success & runs[weight].success
    assert ok.sum() >= 8
    assert d[weight][ok].mean() < 0.5 * d[0.0][ok].mean()


def test_attack_argument_errors(victim):
    model, x, y, lengths = victim
    with pytest.raises(ValueError, match="needs target labels"):
        build_attack("pgd", model, "ntu25", targeted=True)(x, y, lengths)
    with pytest.raises(ValueError, match="untargeted attack"):
        build_attack("pgd", model, "ntu25")(x, y, lengths, target=y)
    with pytest.raises(ValueError, match="V=25 joints but layout 'kinect20'"):
        build_attack("pgd", model, "kinect20")(x, y, lengths)
    holes = x.clone()
    holes[2, 0, 3, 5, 0] = float("nan")
    holes[4, 1, 0, 0, 0] = float("inf")
    for name in ("admm", "pgd"):
        with pytest.raises(ValueError, match=r"NaN or infinite coordinates in clip\(s\) \[2, 4\]"):
            build_attack(name, model, "ntu25")(holes, y, lengths)
    with pytest.raises(ValueError, match="eps must be > 0"):
        build_attack("pgd", model, "ntu25", eps=0)
    with pytest.raises(ValueError, match="invalid hyper-parameter"):
        build_attack("admm", model, "ntu25", rho=-1)
    with pytest.raises(ValueError, match="cw must be in"):
        build_attack("smart", model, "ntu25", cw=2)
    # every bad hyper-parameter of a baseline is named at once, with its rule
    bad = {
        "pgd": ({"eps": 0, "alpha": -1, "steps": 0}, ["eps must be > 0 (metres), got 0", "alpha must be > 0 or null",
                                                      "steps must be >= 1, got 0"]),
        "ifgsm": ({"eps": -0.01}, ["eps must be > 0 (metres), got -0.01"]),
        "smart": ({"rw": -1, "blw": 2, "lr": 0, "clip": 0}, ["rw must be in [0, 1], got -1", "blw must be in [0, 1], got 2",
                                                            "lr must be > 0, got 0", "clip must be > 0 (metres), got 0"]),
        "cw": ({"c": 0, "kappa": -1, "binary_search_steps": 0}, ["c must be > 0, got 0", "kappa must be >= 0, got -1",
                                                                "binary_search_steps must be >= 1, got 0"]),
    }  # fmt: skip
    for name, (kwargs, parts) in bad.items():
        with pytest.raises(ValueError) as err:
            build_attack(name, model, "ntu25", **kwargs)
        assert str(err.value).startswith(f"{name}: invalid hyper-parameter(s): ")
        assert all(part in str(err.value) for part in parts), str(err.value)


def misclassified_batch(model, x, y, targeted):
    """Six of the victim's clips, two of them (1 and 4) relabelled so that the model already gets them wrong
    (untargeted) or already labels them as their target (targeted); returns y, the target and which clips
    an attack must leave alone."""
    x, y = x[:6], y[:6].clone()
    with torch.no_grad():
        pred = model(x).argmax(1)
    wrong = torch.zeros(6, dtype=torch.bool)
    wrong[[1, 4]] = True
    y[wrong] = (pred[wrong] + 1) % 12
    target = None
    if targeted:
        target = (y + 3) % 12
        target[wrong] = pred[wrong]  # labelled as the target already
    return y, target, wrong


@pytest.mark.numerics
@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("name", list_attacks())
def test_misclassified_clips_are_not_attacked_or_counted(victim, name, targeted):
    """An attack on a batch with misclassified clips spends no evaluations on them and does not count them:
    they come back unchanged, unattacked, unsuccessful, with only the clean labelling pass to their name, and
    the attacked clips get exactly what attacking them alone gives (the classifier taken one clip at a
    time, :class:`RowWise`, so that its rounding does not depend on the batch)."""
    tiny, x, y, lengths = victim
    model = RowWise(tiny).eval()
    y, target, wrong = misclassified_batch(model, x, y, targeted)
    x, lengths = x[:6], lengths[:6]
    kwargs = {**FAST[name], "targeted": targeted}
    rows = []
    hook = model.register_forward_pre_hook(lambda m, args: rows.append(len(args[0])))
    try:
        res = build_attack(name, model, "ntu25", **kwargs)(x, y, lengths, target)
        mixed_rows = sum(rows)
        rows.clear()
        keep = ~wrong
        alone = build_attack(name, model, "ntu25", **kwargs)(
            x[keep], y[keep], lengths[keep], None if target is None else target[keep]
        )
        alone_rows = sum(rows)
    finally:
        hook.remove()
    with torch.no_grad():
        clean = model(x).argmax(1)
    assert torch.equal(res.attacked, keep)
    assert torch.equal(res.pred_clean, clean)
    assert torch.equal(res.x_adv[wrong], x[wrong])
    assert torch.equal(res.pred_adv[wrong], clean[wrong])
    assert not res.success[wrong].any()
    assert res.grad_evals[wrong].tolist() == [0, 0]
    assert res.iterations[wrong].tolist() == [0, 0]
    assert res.forward_evals[wrong].tolist() == [1, 1]  # the clean labelling pass, nothing more
    for key, value in res.extras.items():
        assert value.shape == (6,), key
    # the attacked clips: what attacking them alone gives; the classifier saw the two others only once
    spent = res.forward_evals[keep] > 1 if name in GRADIENT_FREE else res.grad_evals[keep] > 0
    assert spent.all()
    assert torch.equal(res.x_adv[keep], alone.x_adv)
    assert torch.equal(res.grad_evals[keep], alone.grad_evals)
    assert torch.equal(res.forward_evals[keep], alone.forward_evals)
    assert torch.equal(res.success[keep], alone.success)
    assert mixed_rows == alone_rows + int(wrong.sum())
    # the metrics count the same clips: misclassified clips are neither attacked nor robust
    m = attack_metrics(
        x, res.x_adv, lengths, "ntu25", y, res.pred_clean, res.pred_adv, target, res.grad_evals
    )
    assert m["num_attacked"] == 4
    assert m["num_success"] == int(res.success.sum())
    assert m["grad_evals_all"] == pytest.approx(float(res.grad_evals[keep].double().mean()))
    assert m["robust_accuracy"] == pytest.approx(float((res.pred_adv == y).double().mean()))
    assert m["robust_accuracy"] <= float((keep & ~res.success).double().mean())


@pytest.mark.parametrize("name", ["pgd", "admm"])
def test_attack_all_attacks_misclassified_clips_too(victim, name):
    """``attack_all=True`` (adversarial training, PGD-AT, TRADES) attacks every clip and skips the clean
    labelling pass."""
    model, x, y, lengths = victim
    y, _, _ = misclassified_batch(model, x, y, targeted=False)
    res = build_attack(name, model, "ntu25", **FAST[name])(x[:6], y, lengths[:6], attack_all=True)
    assert res.attacked.all()
    assert res.pred_clean is None
    assert (res.grad_evals > 0).all()


def test_targeted_attack_refuses_a_target_equal_to_the_label(victim):
    model, x, y, lengths = victim
    target = (y + 1) % 12
    target[[2, 5]] = y[[2, 5]]
    with pytest.raises(ValueError, match=r"target equals the label y in clip\(s\) \[2, 5\]"):
        build_attack("pgd", model, "ntu25", targeted=True)(x, y, lengths, target=target)
