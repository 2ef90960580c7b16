"""ui/gpu.py: the ZeroGPU decorator of model-running UI handlers."""

import sys
import types

from ui.gpu import spaces_gpu


def test_spaces_gpu_is_a_no_op_without_spaces(monkeypatch):
    def handler(x):
        return x + 1

    monkeypatch.setitem(sys.modules, "spaces", None)  # import fails
    assert spaces_gpu(handler) is handler
    fake = types.SimpleNamespace(GPU=lambda fn: lambda *a: ("gpu", fn(*a)))
    monkeypatch.setitem(sys.modules, "spaces", fake)
    assert spaces_gpu(handler)(1) == ("gpu", 2)
