import pytest

from kdlab import list_parameter


@pytest.mark.parametrize("value, kind, expected", [
    ("[0.5, 1.0, 1.5]", "number", [0.5, 1.0, 1.5]),  # papermill -p sensitivities "[0.5, 1.0, 1.5]"
    ([0.5, 1], "number", [0.5, 1]),                    # -y "sensitivities: [0.5, 1]", or the cell's default
    ((8, 4, 2), "int", [8, 4, 2]),
    ("(8, 4)", "int", [8, 4]),
    ('["features.3", "2"]', "str", ["features.3", "2"]),
])
def test_a_list_parameter_arrives_as_a_list(value, kind, expected):
    assert list_parameter(value, "name", kind) == expected


def test_an_optional_list_parameter_may_be_none():
    assert list_parameter(None, "layers", "str", optional=True) is None


@pytest.mark.parametrize("value, kind, optional, message", [
    ("0.5, 1.0]", "number", False, r"^sensitivities must be a non-empty list of numbers, got '0\.5, 1\.0\]'; "
                                   r"with papermill pass -p sensitivities '\[1, 2, 3\]' or -y 'sensitivities: "),
    (0.5, "number", False, r"^sensitivities must be a non-empty list of numbers, got 0\.5"),
    ("[]", "number", False, r"^sensitivities must be a non-empty list of numbers, got '\[\]'"),
    ([8, 4.5], "int", False, r"^sensitivities must be a non-empty list of ints, got \[8, 4\.5\]"),
    ([True, 2], "number", False, r"^sensitivities must be a non-empty list of numbers"),
    (None, "number", False, r"^sensitivities must be a non-empty list of numbers, got None"),
    ("[1, 2]", "str", True, r"^sensitivities must be a non-empty list of strs or None, got '\[1, 2\]'; with papermill "
                            r"pass -p sensitivities '\[\"fc1\", \"fc2\"\]'"),
    ("[1]", "float", False, r"^kind must be one of number, int, str, got 'float'"),
])
def test_anything_else_is_refused_at_once_with_the_syntax_that_works(value, kind, optional, message):
    with pytest.raises(ValueError, match=message):
        list_parameter(value, "sensitivities", kind, optional)
