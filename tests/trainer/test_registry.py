"""The trainer's process set-up read from the environment (trainer/registry.py)."""

from __future__ import annotations

import pytest
import torch

from trainer.registry import apply_thread_limit


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_psl_torch_threads_caps_torch_cpu_threads(monkeypatch, restore_threads):
    torch.set_num_threads(2)
    monkeypatch.setenv("PSL_TORCH_THREADS", "1")
    apply_thread_limit()
    assert torch.get_num_threads() == 1


def test_without_psl_torch_threads_torch_keeps_its_thread_count(monkeypatch, restore_threads):
    torch.set_num_threads(2)
    monkeypatch.delenv("PSL_TORCH_THREADS", raising=False)
    apply_thread_limit()
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("raw", ["0", "two", "-1", "1.5"])
def test_a_bad_psl_torch_threads_is_refused_naming_the_variable(monkeypatch, raw):
    monkeypatch.setenv("PSL_TORCH_THREADS", raw)
    with pytest.raises(ValueError, match="PSL_TORCH_THREADS"):
        apply_thread_limit()
