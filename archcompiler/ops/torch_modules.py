"""Small torch modules that IR ops need and torch lacks; made on first use, so that the
registry imports without torch. Module-level names (`__getattr__`), so they pickle."""

from __future__ import annotations

_CLASSES: dict = {}


def bias_add_class(nn=None):
    if "BiasAdd" not in _CLASSES:
        import torch
        from torch import nn

        class BiasAdd(nn.Module):
            def __init__(self, channels):
                super().__init__()
                self.bias = nn.Parameter(torch.zeros(channels))

            def forward(self, x):
                return x + self.bias.view(1, -1, 1, 1)

        BiasAdd.__module__, BiasAdd.__qualname__ = __name__, "BiasAdd"
        _CLASSES["BiasAdd"] = BiasAdd
    return _CLASSES["BiasAdd"]


def __getattr__(name):
    if name == "BiasAdd":
        return bias_add_class()
    raise AttributeError(name)
