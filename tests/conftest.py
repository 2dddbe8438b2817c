"""Shared fixtures: tiny model configurations and bundles exported once per test session."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from edgekit._native import quiet_toolchain_logs
from tests.helpers.runtime_env import runtime_env  # noqa: F401  (the torch-free device environment, a fixture)

# Every registered model needs a tiny configuration here: the round-trip test is parametrized over
# the registry and fails for a model without one (tests/test_roundtrip.py::test_every_model_has_a_tiny_config).
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "vit_tiny": {"img_size": 32, "patch_size": 8, "dim": 32, "depth": 2, "heads": 2, "num_classes": 10},
    "vit_digits": {"depth": 2},
    "cnn_small": {"widths": [8, 16]},
    **{
        f"seq2seq_{size}": {
            "d_model": 32,
            "encoder_layers": 1,
            "decoder_layers": 2,
            "heads": 4,
            "kv_heads": 2,
            "head_dim": 8,
            "ffn_dim": 64,
            "max_source": 8,
            "max_target": 8,
            "vocab_size": 264,
        }
        for size in ("tiny", "30m", "330m", "tiny_twin", "30m_twin", "330m_twin")
    },  # fmt: skip
    # checkpoint families: random weights here; tests/generation/test_checkpoints.py loads transformers' own
    "t5": {
        "d_model": 32,
        "d_kv": 8,
        "d_ff": 64,
        "num_layers": 1,
        "num_decoder_layers": 2,
        "num_heads": 4,
        "max_source": 8,
        "max_target": 8,
    },
    "bart": {
        "d_model": 32,
        "encoder_layers": 1,
        "decoder_layers": 2,
        "encoder_attention_heads": 4,
        "decoder_attention_heads": 4,
        "encoder_ffn_dim": 64,
        "decoder_ffn_dim": 64,
        "max_position_embeddings": 16,
        "max_source": 8,
        "max_target": 8,
    },
    # 8 frames: the spiking whole-sequence graph unrolls every LIF over time, and XNNPACK lowering grows with it
    **{name: {"dim": 16, "order": 8, "seq_len": 8, "in_features": 8} for name in ("lmuformer", "lmuformer_spiking")},
    **{
        name: {"img_size": 16, "patch_size": 4, "dim": 24, "depth": 2, "heads": 2, "num_classes": 10}
        for name in ("slab_deit_tiny", "slab_deit_tiny_ln")
    },
    # windows 3 at resolution 4 exercise padding, 1 at resolution 2 several windows, 2 at 2 the whole map
    **{
        f"tinyvit_{size}": {
            "img_size": 32,
            "embed_dims": [8, 16, 16, 24],
            "depths": [1, 1, 1, 1],
            "num_heads": [1, 2, 2, 3],
            "window_sizes": [3, 3, 2, 1],
            "num_classes": 10,
        }
        for size in ("5m", "11m", "21m")
    },
}

quiet_toolchain_logs()


class BundleCache:
    """Exports each (model, format) once per session; tests that modify a bundle take a copy."""

    def __init__(self, root: Path):
        self.root = root
        self._done: dict[tuple[str, str], Any] = {}

    def get(self, model: str, fmt: str):
        key = (model, fmt)
        if key not in self._done:
            from edgekit.exporters.pipeline import export

            self._done[key] = export(
                model, format=fmt, out_dir=self.root / f"{model}-{fmt}", config=TINY_CONFIGS[model], samples=4
            )
        return self._done[key]

    def path(self, model: str, fmt: str) -> Path:
        return Path(self.get(model, fmt).bundle_dir)

    def copy(self, model: str, fmt: str, dest: Path) -> Path:
        target = dest / f"{model}-{fmt}"
        shutil.copytree(self.path(model, fmt), target)
        return target


@pytest.fixture(scope="session")
def bundles(tmp_path_factory) -> BundleCache:
    return BundleCache(tmp_path_factory.mktemp("bundles"))


@pytest.fixture(scope="session")
def split_plan(tmp_path_factory):
    """A tiny ViT split over three devices, one per format (tests/splitter and tests/serving share it)."""
    from edgekit.splitter.devices import DeviceSpec
    from edgekit.splitter.edvit import SplitSettings, plan_split
    from tests.splitter.conftest import FORMATS, TINY_SPLIT_CONFIG

    devices = [DeviceSpec(f"dev{i}", None, 50_000_000, 5.0, fmt) for i, fmt in enumerate(FORMATS)]
    settings = SplitSettings(epochs=4, finetune_epochs=1, fusion_epochs=15, samples=4)
    root = tmp_path_factory.mktemp("split") / "plan"
    return plan_split("vit_digits", devices, root, config=TINY_SPLIT_CONFIG, settings=settings)


@pytest.fixture(scope="session")
def tiny_configs() -> dict[str, dict[str, Any]]:
    return TINY_CONFIGS


@pytest.fixture(scope="session")
def lmu(tmp_path_factory):
    """Trained tiny LMUFormers and their (streaming) bundles, shared by tests/lmuformer and the torch-free tests."""
    from tests.lmuformer.bundles import LmuBundles

    return LmuBundles(tmp_path_factory.mktemp("lmu"))


@pytest.fixture(scope="session")
def seq2seq(tmp_path_factory):
    """A briefly trained tiny encoder-decoder and its bundles in every format."""
    from tests.generation.bundles import Seq2SeqBundles

    return Seq2SeqBundles(tmp_path_factory.mktemp("seq2seq"))


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """Random T5 / BART checkpoint folders (safetensors + tokenizer files) and their bundles."""
    from tests.generation.checkpoints import CheckpointBundles

    return CheckpointBundles(tmp_path_factory.mktemp("checkpoints"))
