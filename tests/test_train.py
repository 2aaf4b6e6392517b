import pytest
import torch
from tqdm.std import tqdm as tqdm_std

import kdlab
from kdlab.train import amp_dtype


def test_device_auto_is_cpu_here_and_names_are_checked():
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert kdlab.get_device("auto").type == expected
    assert kdlab.get_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device must be"):
        kdlab.get_device("tpu")


def test_mixed_precision_only_on_cuda():
    assert amp_dtype(torch.device("cpu")) is None
    if torch.cuda.is_available():
        assert amp_dtype(torch.device("cuda")) in (torch.float16, torch.bfloat16)


def _train_once(digits, seed, epochs=2):
    kdlab.set_seed(seed)
    model = kdlab.build_model("mlp100", in_shape=(1, 8, 8))
    loader = kdlab.make_loader(digits[0], 64, shuffle=True, seed=seed)
    history = kdlab.fit(model, loader, epochs, device="cpu")
    return model, history


def test_fit_learns_and_reports_each_epoch(digits):
    model, history = _train_once(digits, seed=0, epochs=5)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    assert history[-1]["loss"] < history[0]["loss"]
    assert kdlab.evaluate(model, kdlab.make_loader(digits[1], 128), "cpu") > 0.9


@pytest.mark.parametrize("value, disabled", [("1", True), ("true", True), ("", False)])
def test_tqdm_disable_reaches_the_notebook_bar(digits, monkeypatch, value, disabled):
    """tqdm.notebook passes disable=False itself, so fit reads TQDM_DISABLE (a bar's messages can swamp nbval)."""
    seen = []

    def bar(*args, **kwargs):
        seen.append(kwargs.get("disable", False))
        return tqdm_std(*args, **{**kwargs, "disable": True})

    monkeypatch.setenv("TQDM_DISABLE", value)
    monkeypatch.setattr("kdlab.train.tqdm", bar)
    kdlab.fit(kdlab.build_model("mlp100", in_shape=(1, 8, 8)), kdlab.make_loader(digits[0], 256), 1, device="cpu")
    assert seen == [disabled]


def test_same_seed_repeats_exactly_on_cpu(digits):
    a, history_a = _train_once(digits, seed=3)
    b, history_b = _train_once(digits, seed=3)
    c, _ = _train_once(digits, seed=4)
    assert history_a == history_b
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_evaluate_matches_a_hand_count(digits):
    model, _ = _train_once(digits, seed=0, epochs=1)
    loader = kdlab.make_loader(digits[1], 50)
    logits, labels = kdlab.predict(model, loader, "cpu")
    by_hand = sum(int(model(x[None]).argmax()) == y for x, y in digits[1]) / len(digits[1])
    assert kdlab.evaluate(model, loader, "cpu") == pytest.approx(by_hand)
    assert logits.shape == (360, 10) and torch.equal(labels, digits[1].targets)


def test_sgd_uses_momentum():
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert kdlab.make_optimizer(params, "sgd", lr=0.1, momentum=0.8).param_groups[0]["momentum"] == 0.8
    assert isinstance(kdlab.make_optimizer(params), torch.optim.Adam)


def test_non_finite_loss_stops_with_epoch_batch_and_hint(digits):
    model = kdlab.build_model("mlp30", in_shape=(1, 8, 8))
    loader = kdlab.make_loader(digits[0], 64)
    nan_loss = lambda logits, inputs, labels: logits.sum() * float("nan")
    with pytest.raises(FloatingPointError, match="epoch 1, batch 1.*lr"):
        kdlab.fit(model, loader, 1, loss_fn=nan_loss, device="cpu")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, l: kdlab.fit(m, l, -1), "epochs must be"),
        (lambda m, l: kdlab.fit(m, l, 1, optimizer="rmsprop"), "optimizer must be one of adam, sgd"),
        (lambda m, l: kdlab.fit(m, l, 1, lr=0), "lr must be > 0"),
        (lambda m, l: kdlab.fit(m, l, 1, optimizer="sgd", momentum=1.5), "momentum must be in"),
        (lambda m, l: kdlab.set_seed(-1), "seed must be"),
    ],
)
def test_bad_arguments(digits, call, message):
    model = kdlab.build_model("mlp30", in_shape=(1, 8, 8))
    with pytest.raises(ValueError, match=message):
        call(model, kdlab.make_loader(digits[1], 64))
