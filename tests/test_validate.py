"""validate.compare / judge_quantized: outputs of the wrong shape are their own error, not a low score."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.errors import ShapeMismatch, ValidationFailed
from edgekit.types import QualityGate, Tolerance
from edgekit.validate import compare, judge_quantized


def outputs(shape, n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [{"logits": rng.standard_normal(shape).astype(np.float32)} for _ in range(n)]


def test_compare_raises_on_an_output_of_the_wrong_shape():
    with pytest.raises(ShapeMismatch, match=r"logits.*\(1, 2\).*\(1, 3\)"):
        compare(outputs((1, 3)), outputs((1, 2)), Tolerance())


def test_judge_quantized_raises_on_an_output_of_the_wrong_shape():
    with pytest.raises(ShapeMismatch, match="logits"):
        judge_quantized(outputs((1, 3)), outputs((1, 2)), QualityGate(), "int8", "random normal")


def test_a_shape_mismatch_is_not_a_validation_failure_a_flag_could_keep():
    assert not issubclass(ShapeMismatch, ValidationFailed)
    assert compare(outputs((1, 3)), outputs((1, 3), seed=1), Tolerance()).passed is False  # values: a verdict
