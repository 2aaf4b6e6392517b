"""Exercise 1.1's check names each classic bug of the distillation loss, and accepts the right loss."""
import pytest
import torch.nn.functional as F

from kdlab.exercises import ExerciseError, check_distillation_loss


def _loss(log_input=True, reduction="batchmean", t_squared=True, swap=False, soften_student=True,
          soften_teacher=True, hard_at_t=False, detach=False):
    """The distillation loss with one classic mistake switched on."""
    def loss(s, t, y, T, a):
        student = F.log_softmax(s / T if soften_student else s, -1)
        soft = F.kl_div(student if log_input else student.exp(), F.softmax(t / T if soften_teacher else t, -1),
                        reduction=reduction) * (T**2 if t_squared else 1)
        hard = F.cross_entropy(s / T if hard_at_t else s, y)
        value = (1 - a) * soft + a * hard if swap else a * soft + (1 - a) * hard
        return value.detach() if detach else value
    return loss


@pytest.mark.filterwarnings("ignore:reduction. .mean. divides:UserWarning")
@pytest.mark.parametrize("mistake, message", [
    ({"t_squared": False}, r"lacks the factor T²"),
    ({"reduction": "mean"}, r"divided by the number of classes too: reduction='mean'"),
    ({"log_input": False}, r"takes the student's LOG-probabilities"),
    ({"reduction": "sum"}, r"summed over the batch"),
    ({"swap": True}, r"you swapped them"),
    ({"soften_student": False}, r"the student's logits must be softened too"),
    ({"soften_teacher": False}, r"the teacher's logits must be softened too"),
    ({"hard_at_t": True}, r"the hard-label term uses the student's logits at T = 1"),
    ({"detach": True}, r"the loss has no gradient"),
])
def test_each_classic_mistake_gets_its_own_message(mistake, message):
    with pytest.raises(ExerciseError, match=r"^exercise 1\.1: .*" + message):
        check_distillation_loss(_loss(**mistake))


def test_the_right_loss_passes(capsys):
    check_distillation_loss(_loss())
    assert "exercise 1.1: correct." in capsys.readouterr().out


def test_a_loss_per_example_is_refused_by_its_shape():
    with pytest.raises(ExerciseError, match=r"return the loss as a 0-dim tensor .* got \(8,\)"):
        check_distillation_loss(lambda s, t, y, T, a: F.cross_entropy(s, y, reduction="none"))
