import torch

import kdlab
from kdlab.memo import CHUNK, OutputMemo, memoizable
from kdlab.variants import multi_teacher_loss


def _counting(model):
    calls = []
    model.register_forward_hook(lambda module, args, output: calls.append(len(args[0])))
    return calls


def test_the_memo_gives_what_the_teachers_compute(digits):
    train, _ = digits
    teachers = [kdlab.build_model("mlp30", 10, (1, 8, 8)).eval() for _ in range(2)]
    memo = OutputMemo(teachers, train, torch.device("cpu"))
    batch = train.images[[5, 900, 5, 17]]  # a repeated example finds the same row
    with torch.no_grad():
        direct = [t(batch) for t in teachers]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(memo.lookup(batch), direct))
    assert memo.lookup(batch + 1e-3) is None  # an input it has not seen: computed by the caller


def test_distilling_runs_each_teacher_once_per_example_and_the_loss_is_unchanged(digits):
    train, _ = digits
    kd = kdlab.DistillModel(train, teacher=["mlp30", "mlp30"], student="mlp30", device="cpu")
    calls = _counting(kd.teachers[1])
    x, y = next(iter(kd.loader))
    logits = kd.student(x)
    with torch.no_grad():
        expected = multi_teacher_loss(logits, [t.eval()(x) for t in kd.teachers], y, kd.temperature, kd.alpha)
    calls.clear()
    assert torch.allclose(kd.distillation_loss(logits, x, y), expected, atol=1e-6)
    kd.train(2)
    assert sum(calls) == len(train) and max(calls) <= CHUNK


def test_training_the_teacher_again_forgets_its_old_outputs(digits):
    train, _ = digits
    kd = kdlab.DistillModel(train, teacher="mlp30", student="mlp30", device="cpu")
    kd.train(1)
    kd.train_teacher(1)
    x, y = next(iter(kd.loader))
    logits = kd.student(x)
    with torch.no_grad():
        expected = kdlab.distillation_loss(logits, kd.teacher.eval()(x), y, kd.temperature, kd.alpha)
    assert torch.allclose(kd.distillation_loss(logits, x, y), expected, atol=1e-6)


def test_augmented_data_is_not_memoized(digits):
    train, _ = digits
    assert memoizable(train) and memoizable(torch.utils.data.TensorDataset(train.images, train.targets))
    jittered = kdlab.jitter(train)
    assert not memoizable(jittered)
    kd = kdlab.DistillModel(jittered, teacher="mlp30", student="mlp30", device="cpu")
    calls = _counting(kd.teacher)
    kd.train(1)
    assert sum(calls) == len(train) and kd._memo is None  # every view computed as it comes
