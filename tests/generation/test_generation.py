"""Tokenizer, code-defined tasks and decoding strategies, on the PyTorch runner."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekit.errors import InputError
from edgekit.generation.sampling import Sampling, generate
from edgekit.generation.tasks import TASKS
from edgekit.generation.tokenizer import ByteTokenizer
from edgekit.generation.torch_runner import TorchSeq2SeqRunner
from edgekit.models.seq2seq import EncoderDecoder
from tests.helpers.seq2seq import TINY


def test_byte_tokenizer_round_trips_any_text():
    tok = ByteTokenizer()
    for text in ("hello", "", "Grüße, 東京 ✓"):
        assert tok.decode(tok.encode(text)) == text
    assert tok.decode([tok.bos_id, 104, 105, tok.eos_id]) == "hi"  # markers are dropped
    with pytest.raises(InputError, match="outside the vocabulary"):
        tok.decode([104, 9999])
    with pytest.raises(InputError, match="at most 4"):
        tok.encode("too long", max_len=4, what="prompt")


@pytest.mark.parametrize("name", ["reverse", "sort", "add"])
def test_tasks_are_deterministic_and_held_out_is_disjoint(name):
    task = TASKS.get(name)
    train, test = task.split(300, 100, seed=3)
    assert task.split(300, 100, seed=3) == (train, test)
    assert not {s for s, _ in train} & {s for s, _ in test}
    source, target = train[0]
    expected = {"reverse": source[::-1], "sort": "".join(sorted(source))}.get(name, None)
    if name == "add":
        a, b = source.split("+")
        expected = str(int(a) + int(b))
    assert target == expected


@pytest.fixture(scope="module")
def runner():
    torch.manual_seed(0)
    return TorchSeq2SeqRunner(EncoderDecoder(TINY))


def test_greedy_follows_the_argmax(runner):
    result = generate(runner, "abc", max_new_tokens=5, stop_ids=())
    runner.start(list(b"abc"))
    token, expected = runner.tokenizer.bos_id, []
    for position in range(5):
        token = int(np.argmax(runner.step(token, position)))
        expected.append(token)
    assert list(result.tokens) == expected and result.stopped_by == "max new tokens"


def test_sampling_is_seeded_and_top_1_is_greedy(runner):
    a = generate(runner, "abc", 6, Sampling(temperature=1.0, top_k=20, seed=5), stop_ids=())
    b = generate(runner, "abc", 6, Sampling(temperature=1.0, top_k=20, seed=5), stop_ids=())
    assert a == b
    greedy = generate(runner, "abc", 6, stop_ids=())
    assert generate(runner, "abc", 6, Sampling(temperature=0.7, top_k=1, seed=9), stop_ids=()).tokens == greedy.tokens


def test_stop_token_ends_generation(runner):
    first = generate(runner, "abc", 1, stop_ids=()).tokens[0]
    result = generate(runner, "abc", 6, stop_ids=(first,))
    assert result.tokens == () and result.stopped_by == "stop token"


def test_empty_prompt_and_overflow(runner):
    result = generate(runner, "", 4, stop_ids=())  # an all-padding source: finite logits, four tokens
    assert len(result.tokens) == 4
    with pytest.raises(InputError, match=r"1\.\.9 new tokens fit"):
        generate(runner, "abc", TINY.max_target)
    with pytest.raises(InputError, match="at most 12"):
        generate(runner, "x" * 13, 3)
    with pytest.raises(InputError, match=">= 0"):
        Sampling(temperature=-1.0)
