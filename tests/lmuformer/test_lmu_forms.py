"""The LMU memory's three spellings, the LIF neuron, and the model's whole-sequence vs streaming forms in torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekit.models import create_model
from edgekit.models.lmu import FORMS, LMUMemory, discretize_zoh, legendre_system
from edgekit.models.spiking import LIF, recording, synaptic_operations
from edgekit.models.state import StreamState
from tests.lmuformer.bundles import TRAINED

MODELS = ("lmuformer", "lmuformer_spiking")


def _set_form(module: torch.nn.Module, form: str) -> None:
    for m in module.modules():
        if isinstance(m, LMUMemory):
            m.form = form


def test_zero_order_hold_matches_scipy():
    from scipy.signal import cont2discrete

    a, b = legendre_system(6, 12.0)
    a_bar, b_bar = discretize_zoh(a, b)
    want_a, want_b, *_ = cont2discrete((a.numpy(), b.numpy()[:, None], np.eye(6), np.zeros((6, 1))), dt=1.0)
    np.testing.assert_allclose(a_bar.numpy(), want_a, atol=1e-12)
    np.testing.assert_allclose(b_bar.numpy(), want_b[:, 0], atol=1e-12)


@pytest.mark.parametrize(("order", "theta", "steps"), [(8, 16.0, 16), (32, 64.0, 64), (16, 40.0, 23)])
def test_three_memory_forms_agree(order, theta, steps):
    memory = LMUMemory(order, theta, max_len=64)
    u = torch.randn(3, 1, steps, generator=torch.Generator().manual_seed(order))
    results = {form: getattr(memory, f"_{form}")(u, None) for form in FORMS}
    for form in ("fft", "conv"):
        assert torch.max(torch.abs(results[form] - results["recurrent"])) <= 1e-5, form
    assert results["recurrent"].abs().max() > 0.1  # the memory holds something


def test_recurrence_continues_from_a_state():
    memory = LMUMemory(8, 16.0, 16)
    u = torch.randn(2, 1, 16)
    whole, _ = memory(u, torch.zeros(2, 8))
    first, m_mid = memory(u[..., :7], torch.zeros(2, 8))
    second, m_last = memory(u[..., 7:], m_mid)
    torch.testing.assert_close(torch.cat([first, second], -1), whole)
    torch.testing.assert_close(m_last, whole[..., -1])


def test_lif_integrates_fires_and_resets():
    lif = LIF(tau=2.0, threshold=1.0).eval()
    # constant 1: v = 0.5, 0.75, 0.875 ... approaches the threshold and never reaches it
    spikes, v = lif(torch.ones(1, 1, 6))
    assert spikes.sum() == 0 and 0.98 < float(v) < 1.0
    # constant 2: v = 1 -> fire, reset to 0, v = 1 -> fire ...
    spikes, v = lif(torch.full((1, 1, 4), 2.0))
    assert spikes.flatten().tolist() == [1.0, 1.0, 1.0, 1.0] and float(v) == 0.0
    # exactly at, one float below and far on either side of the threshold, for th = 1 and another threshold
    for threshold in (1.0, 0.7):
        lif = LIF(threshold=threshold).eval()
        th = torch.tensor(threshold)
        v = torch.stack([th, torch.nextafter(th, torch.tensor(0.0)), th + 1e6, th - 1e6, th + 0.5, th - 0.5])
        assert lif._fire(v).tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0], threshold


def test_lif_surrogate_gradient_reaches_the_input():
    lif = LIF().train()
    x = torch.full((1, 3, 5), 1.5, requires_grad=True)
    spikes, _ = lif(x)
    spikes.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("model", MODELS)
def test_model_forms_agree(model):
    spec = create_model(model, **TRAINED)
    x = torch.randn(4, 16, 4, generator=torch.Generator().manual_seed(1)) * 2
    outputs = {}
    with torch.no_grad():
        for form in FORMS:
            _set_form(spec.module, form)
            outputs[form] = spec.module.forward_steps(x)
    for form in ("fft", "conv"):
        assert torch.max(torch.abs(outputs[form] - outputs["recurrent"])) <= 1e-5
    # the final prediction is the mean over every frame
    torch.testing.assert_close(spec.module(x), outputs["conv"][:, -1], rtol=1e-5, atol=1e-6)


def _stream(module, x: torch.Tensor, chunk: int) -> tuple[torch.Tensor, list]:
    state, outputs = StreamState(batch=x.shape[0]), []
    for start in range(0, x.shape[1], chunk):
        step = StreamState(state.outputs or None, batch=x.shape[0])
        outputs.append(module.stream_step(x[:, start : start + chunk], step))
        state = step
    return torch.cat(outputs, dim=1), state.slots


@pytest.mark.parametrize("chunk", [1, 4])
@pytest.mark.parametrize("model", MODELS)
def test_streaming_equals_whole_sequence_in_torch(model, chunk):
    spec = create_model(model, **TRAINED)
    x = torch.randn(2, 16, 4, generator=torch.Generator().manual_seed(2)) * 3
    with torch.no_grad(), recording(spec.module) as whole_record:
        whole = spec.module.forward_steps(x)
    with torch.no_grad():
        streamed, slots = _stream(spec.module, x, chunk)
    assert torch.max(torch.abs(streamed - whole)) <= 1e-5
    names = [s.name for s in slots]
    assert len(names) == len(set(names))
    kinds = {s.kind for s in slots}
    assert {"lmu_memory", "conv_buffer", "running_sum", "frame_count"} <= kinds
    assert ("lif_membrane" in kinds) == (model == "lmuformer_spiking")
    if model == "lmuformer_spiking":
        assert torch.cat(whole_record.spikes, 1).sum() > 0  # inputs scaled so that the untrained model fires


def test_no_lookahead():
    # Causal padding: changing frame 9 leaves every prediction before frame 9 as it was.
    spec = create_model("lmuformer", **TRAINED)
    x = torch.randn(1, 16, 4)
    y = x.clone()
    y[:, 9] += 5.0
    with torch.no_grad():
        a, b = spec.module.forward_steps(x), spec.module.forward_steps(y)
    torch.testing.assert_close(a[:, :9], b[:, :9])
    assert not torch.allclose(a[:, 9:], b[:, 9:])


def test_synaptic_operations_count_spikes_as_accumulates():
    conv = torch.nn.Sequential(torch.nn.Conv1d(3, 5, 1))
    spikes = torch.zeros(1, 3, 4)
    spikes[0, 0, 1] = spikes[0, 2, 3] = 1.0  # two spikes, each reaching 5 output channels
    ops = synaptic_operations(conv, spikes)
    assert (ops.macs, ops.acs) == (0, 10)
    ops = synaptic_operations(conv, torch.randn(1, 3, 4))
    assert (ops.macs, ops.acs) == (3 * 5 * 4, 0)
    ann = synaptic_operations(create_model("lmuformer", **TRAINED).module, torch.randn(2, 16, 4))
    snn = synaptic_operations(create_model("lmuformer_spiking", **TRAINED).module, torch.randn(2, 16, 4))
    assert ann.acs == 0 and ann.macs > 0
    # only the first embedding conv and the memory's Abar m stay multiply-accumulates in the spiking model
    assert snn.macs < ann.macs / 10
    assert snn.energy_uj() < ann.energy_uj()


def test_streaming_export_refuses_models_without_a_stream_form():
    from edgekit.errors import UnsupportedOptionError
    from edgekit.transforms.streaming import streaming_spec

    with pytest.raises(UnsupportedOptionError, match="lmuformer_spiking"):
        streaming_spec(create_model("cnn_small", widths=[8, 16]))
