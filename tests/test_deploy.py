import copy
import json
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18

import kdlab
from kdlab import SparseLinear, deploy
from kdlab.bench_deploy import bench_deploy, deploy_table
from kdlab.deploy import FORMS
from kdlab.memory_probe import PROBE_FIELDS

DIGITS = (1, 8, 8)
EXACT = 1e-5  # float and sparse forms: the same sums in another order
INT8_AGREEMENT = 0.97  # int8 forms: share of test images whose predicted class stays the same


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread here: these small networks gain nothing from two, and on a busy 2-core machine two threads
    wait for each other on every op (deploy's sparse form times its layers)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(digits, one_thread):
    """A LeNet-300-100 trained on digits, pruned by std, its weights shared at 5 bits: the course's compressed form."""
    train, test = digits
    kdlab.set_seed(0)
    model = kdlab.build_model("lenet300", in_shape=DIGITS)
    loader = kdlab.make_loader(train, 64, shuffle=True)
    kdlab.fit(model, loader, 4, lr=3e-3, device="cpu")
    kdlab.iterative_prune(model, loader, [1.0, 2.0], epochs=1, device="cpu")  # about 7 % of the weights left
    kdlab.share_weights(model, 5)
    return model.eval()


@pytest.fixture(scope="module")
def images(digits):
    return torch.stack([digits[1][i][0] for i in range(len(digits[1]))])


def _deploy(model, form, **options):
    """deploy() with its UncompressedWeightWarnings recorded; (module, their messages)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        deployed = deploy(model, form, **options)
    return deployed, [str(w.message) for w in caught if issubclass(w.category, kdlab.UncompressedWeightWarning)]


def _pruned_weight(out_features=30, in_features=50, density=0.1, seed=0):
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(out_features, in_features, generator=generator)
    return weight * (torch.rand(out_features, in_features, generator=generator) < density)


@pytest.mark.parametrize("shape", [(1, 50), (7, 50), (2, 3, 50), (50,)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_sparse_linear_is_the_dense_layer(shape, with_bias):
    weight = _pruned_weight()
    bias = torch.randn(30) if with_bias else None
    layer = SparseLinear(weight, bias)
    x = torch.randn(shape)
    expected = F.linear(x, weight, bias)
    assert layer.weight.layout == torch.sparse_csr and layer.weight.col_indices().dtype == torch.int32
    assert layer.weight.values().numel() == int(torch.count_nonzero(weight))
    torch.testing.assert_close(layer(x), expected, atol=EXACT, rtol=EXACT)
    scripted = torch.jit.freeze(torch.jit.script(layer.eval()))
    torch.testing.assert_close(scripted(x), expected, atol=EXACT, rtol=EXACT)


def test_sparse_linear_from_linear_and_its_checks():
    linear = nn.Linear(50, 30)
    with torch.no_grad():
        linear.weight.copy_(_pruned_weight())
    layer = SparseLinear.from_linear(linear)
    assert layer.density() == pytest.approx(int(torch.count_nonzero(linear.weight)) / 1500)
    assert "density=" in repr(layer)
    x = torch.randn(4, 50)
    torch.testing.assert_close(layer(x), linear(x), atol=EXACT, rtol=EXACT)
    assert torch.equal(copy.deepcopy(layer)(x), layer(x))  # rebuilt: deepcopy cannot reach a CSR tensor's storage
    with pytest.raises(ValueError, match="^layer must be an nn.Linear, got Conv2d"):
        SparseLinear.from_linear(nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match="^weight must be a 2-D float tensor"):
        SparseLinear(torch.ones(3))
    with pytest.raises(ValueError, match=r"^bias must be None or a tensor of shape \(30,\)"):
        SparseLinear(_pruned_weight(), torch.ones(3))


@pytest.mark.parametrize("form", ["float", "sparse"])
def test_float_and_sparse_forms_compute_what_the_shared_model_computes(trained, images, form):
    deployed, _ = _deploy(trained, form)
    with torch.no_grad():
        torch.testing.assert_close(deployed(images), trained(images), atol=EXACT, rtol=EXACT)
        torch.testing.assert_close(deployed(images[:1]), trained(images[:1]), atol=EXACT, rtol=EXACT)
    assert isinstance(deployed, torch.jit.ScriptModule) and deployed.kdlab_deploy["scripted"]
    if form == "sparse":
        assert set(deployed.kdlab_deploy["kernels"]) == {"1", "3", "5"}


@pytest.mark.parametrize("form", ["dynamic", "int8"])
def test_int8_forms_keep_the_predictions(trained, images, digits, form):
    options = {"calibration_data": digits[0]} if form == "int8" else {}
    deployed, messages = _deploy(trained, form, **options)
    assert messages == []  # every weight of LeNet-300-100 is on an int8 kernel
    assert set(deployed.kdlab_deploy["kernels"].values()) == {f"int8 {'static' if form == 'int8' else 'dynamic'}"}
    with torch.no_grad():
        expected, got = trained(images), deployed(images)
    assert (got.argmax(1) == expected.argmax(1)).float().mean() >= INT8_AGREEMENT
    assert (got - expected).abs().max() <= 0.1 * expected.abs().max()


def test_deploy_decodes_once_and_leaves_the_model_alone(trained, images):
    before = trained(images)
    deployed, _ = _deploy(trained, "float", script=False)
    names = list(deployed.state_dict())
    assert not any(key in name for name in names for key in ("original", "index", "mask", "codebook"))
    assert sum(t.numel() for t in deployed.state_dict().values()) == kdlab.count_parameters(
        kdlab.build_model("lenet300", in_shape=DIGITS))  # float weights only: no indices, masks or codebooks
    assert not any(p.requires_grad for p in deployed.parameters()) and not deployed.training
    assert kdlab.shared_layers(trained) and torch.equal(trained(images), before)


def test_deploy_reads_quantized_and_pruned_models(trained, images, tmp_path):
    quantized = kdlab.quantize_model(trained, 4)
    deployed, _ = _deploy(quantized, "sparse")
    with torch.no_grad():
        torch.testing.assert_close(deployed(images), quantized(images), atol=EXACT, rtol=EXACT)
    pruned = kdlab.build_model("lenet300", in_shape=DIGITS).eval()
    kdlab.prune_by_fraction(pruned, 0.9)
    deployed, messages = _deploy(pruned, "sparse", script=False)
    assert isinstance(deployed[1], SparseLinear) and messages == []
    path = tmp_path / "sparse.pt"
    torch.save(deployed, path)
    with torch.no_grad():
        torch.testing.assert_close(deployed(images), pruned(images), atol=EXACT, rtol=EXACT)
        assert torch.equal(torch.load(path, weights_only=False)(images), deployed(images))


def test_sparse_form_names_the_layers_it_leaves_dense(images):
    kdlab.set_seed(0)
    model = kdlab.build_model("lenet5", in_shape=DIGITS).eval()
    kdlab.prune_by_fraction(model, 0.9, layers=["5"])
    deployed, messages = _deploy(model, "sparse", script=False)
    assert isinstance(deployed[5], SparseLinear) and isinstance(deployed[7], nn.Linear)
    assert len(messages) == 1
    assert messages[0].startswith("deploy(form='sparse') left 3 weight tensor(s) as float: 0 (Conv2d), 2 (Conv2d), "
                                  "7 (Linear, density 1.000 > max_density 0.3)")
    with torch.no_grad():
        torch.testing.assert_close(deployed(images), model(images), atol=EXACT, rtol=EXACT)


def test_sparse_form_measures_each_layer_on_example_input(trained, images):
    deployed, messages = _deploy(trained, "sparse", example_input=images[:1], max_density=1.0)
    info = deployed.kdlab_deploy
    assert set(info["kernels"]) | set(info["left_float"]) == {"1", "3", "5"}
    assert all("measured faster" in why for why in info["left_float"].values())
    assert all(name in messages[0] for name in info["left_float"]) if messages else not info["left_float"]


def test_deploy_runs_a_torchvision_resnet():
    kdlab.set_seed(0)
    model = resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    deployed, messages = _deploy(model, "int8", calibration_data=torch.randn(4, 3, 32, 32))
    assert messages == [] and len(deployed.kdlab_deploy["kernels"]) == 21  # 20 convs with their BN, and the fc
    with torch.no_grad():
        assert deployed(x).shape == (2, 10) and torch.isfinite(deployed(x)).all()
    deployed, messages = _deploy(model, "dynamic")
    assert messages[0].startswith("deploy(form='dynamic') left 20 weight tensor(s) as float: conv1 (Conv2d), "
                                  "layer1.0.conv1 (Conv2d)")
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), model(x), atol=0.05, rtol=0.05)


class Tagger(nn.Module):
    """Embedding, LSTM and a Linear classifier over the last step."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(40, 16)
        self.lstm = nn.LSTM(16, 24, batch_first=True)
        self.fc = nn.Linear(24, 5)

    def forward(self, tokens):
        out, _ = self.lstm(self.emb(tokens))
        return self.fc(out[:, -1])


@pytest.mark.parametrize("form", FORMS)
def test_embedding_and_lstm_stay_float_with_a_warning(form):
    kdlab.set_seed(0)
    model = Tagger().eval()
    tokens = torch.randint(0, 40, (6, 9))
    options = {"calibration_data": torch.randint(0, 40, (16, 9))} if form == "int8" else {}
    deployed, messages = _deploy(model, form, **options)
    if form == "float":
        assert messages == []
    else:
        assert len(messages) == 1
        assert "emb (Embedding), lstm.weight_ih_l0 (LSTM), lstm.weight_hh_l0 (LSTM)" in messages[0]
        assert ("fc (Linear, density 1.000 > max_density 0.3)" in messages[0]) == (form == "sparse")
    with torch.no_grad():
        torch.testing.assert_close(deployed(tokens), model(tokens), atol=0.1 if "int8" in form or form == "dynamic"
                                   else EXACT, rtol=0.1)


def test_a_model_torchscript_cannot_compile_is_returned_eager():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x, *extra):
            return self.fc(x) if not extra else self.fc(x) + sum(extra)

    with pytest.warns(RuntimeWarning, match="could not compile the model with TorchScript"):
        deployed = deploy(Branchy(), "float")
    assert not deployed.kdlab_deploy["scripted"] and isinstance(deployed, nn.Module)


@pytest.mark.parametrize("call, message", [
    (lambda m: deploy("lenet300", "float"), "^model must be a torch.nn.Module, got str"),
    (lambda m: deploy(torch.jit.script(nn.Linear(2, 2)), "float"), "^model must be an eager torch.nn.Module"),
    (lambda m: deploy(m, "fast"), "^form must be one of 'float', 'sparse', 'dynamic', 'int8', got 'fast'"),
    (lambda m: deploy(m, None), "^form must be one of"),
    (lambda m: deploy(m, "sparse", max_density=0), r"^max_density must be a number in \(0, 1\], got 0"),
    (lambda m: deploy(m, "sparse", max_density=1.5), r"^max_density must be a number in \(0, 1\], got 1.5"),
    (lambda m: deploy(m, "sparse", max_density="0.3"), r"^max_density must be a number in \(0, 1\]"),
    (lambda m: deploy(m, "float", script="yes"), "^script must be True or False, got 'yes'"),
    (lambda m: deploy(m, "sparse", example_input=[1, 2]), "^example_input must be None or a tensor"),
    (lambda m: deploy(m, "sparse", example_input=torch.ones(2, 5)), "^example_input must be an input the model"),
    (lambda m: deploy(m, "int8"), "^calibration_data must be given for form='int8'"),
    (lambda m: deploy(m, "sparse", calibration_data=torch.ones(2, 1, 8, 8)), "^calibration_data must be None for "
                                                                             "form='sparse'"),
    (lambda m: deploy(m, "int8", calibration_data=[1, 2]), "^calibration_data must be a DataLoader, Dataset or"),
    (lambda m: deploy(m, "int8", calibration_data=torch.ones(2, 3)), "^calibration_data must hold inputs the model"),
    (lambda m: deploy(m, "int8", calibration_data=torch.ones(1, 1, 8, 8), backend="cuda"),
     "^backend must be None or one of 'x86'"),
])
def test_deploy_refuses_bad_arguments(call, message):
    model = kdlab.build_model("lenet300", in_shape=DIGITS)
    with pytest.raises(ValueError, match=message):
        call(model)


def test_bench_deploy_refuses_bad_arguments_and_prints_its_table():
    with pytest.raises(ValueError, match="^repeats must be an int >= 1, got 0"):
        bench_deploy("digits", repeats=0)
    with pytest.raises(ValueError, match="^sizes must be a non-empty list of batch sizes"):
        bench_deploy("digits", sizes=())
    with pytest.raises(ValueError, match="^every batch size in sizes must be an int >= 1, got 0"):
        bench_deploy("digits", sizes=(1, 0))
    row = {"network": "lenet300", "batch": 1, "form": "kdlab int8", "ms": 0.01, "speedup": 3.0,
           "vs_quantize_dynamic": 2.0, "model_mb": 1.5, "peak_mb": None, "accuracy": 0.95,
           "accuracy_loss_points": 0.2}
    text = deploy_table({"rows": [row], "torch_threads": 2, "load_average_before": (1.0, 1.0, 1.0),
                         "load_average_after": None,
                         "targets": [{"network": "lenet300", "batch": 1, "target_speedup": 2.0,
                                      "best_form": "kdlab int8", "speedup": 3.0, "met": True}]})
    assert "kdlab int8" in text and "3.00x" in text and "95.0% (-0.2 pt)" in text and "torch threads: 2" in text
    assert "target lenet300 batch 1: >= 2.0x -> kdlab int8 3.00x: met" in text


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the memory probe reads /proc/self/status")
def test_memory_probe_measures_a_saved_form_in_a_fresh_process(tmp_path):
    model = nn.Sequential(nn.Linear(1000, 1000), nn.ReLU(), nn.Linear(1000, 10)).eval()  # 4 MB of float weights
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.freeze(torch.jit.script(model)), path)
    spec = {"path": str(path), "scripted": True, "shapes": [[1, 1000], [64, 1000]], "threads": 1, "calls": 2}
    probe = kdlab.memory_probe.__file__
    done = subprocess.run([sys.executable, probe, json.dumps(spec)], capture_output=True, text=True, check=True)
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(measured) == set(PROBE_FIELDS)
    assert 3.5 < measured["model_mb"] < 40 and len(measured["peak_mb"]) == 2
    assert all(peak >= 3.5 for peak in measured["peak_mb"])
