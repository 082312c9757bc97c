"""Finding the operations of a training step that make the host wait for the device, on any device.

On a GPU the host queues kernels ahead of the device; an op whose result the host must read (`.item()`, an
output whose size depends on the data) or a blocking copy of Python data to the device drains that queue
(`torch.cuda.set_sync_debug_mode` reports them; `benchmarks/gpu_suite.py` counts them there). On the CPU
nothing waits, so `HostSyncCounter` recognises the same ops by name and arguments instead: a
`TorchDispatchMode` sees every aten op of the forward, the backward and the optimizer step, and a few
Tensor methods that never reach the dispatcher for CPU tensors are wrapped while it is active.

Detected (the op, then why it waits):
  _local_scalar_dense, is_nonzero, equal   a device value read by the host: `.item()`, `bool(t)`, `if t:`
  nonzero, argwhere, unique*, masked_select, bincount, histc
                                            the output size (or range) depends on the data
  index / index_put with a bool index       boolean-mask indexing is `nonzero` followed by a gather
  repeat_interleave without output_size     the output length is the sum of the repeats
  lift_fresh(_copy)                         `torch.tensor(...)` / `new_tensor` inside the step: a blocking
                                            copy from pageable host memory on a GPU
  _to_copy / copy_ across devices           a device-to-host read or a blocking host-to-device copy
  Tensor.tolist / numpy / cpu / __array__   host reads that bypass the dispatcher on the CPU
Not visible here: syncs inside the CUDA kernel of an otherwise fixed-shape op (none known among the ops the
step uses; the GPU suite's count covers them).
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from types import FrameType
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_DATA_DEPENDENT = {
    "_local_scalar_dense": "host read of a device value (.item(), bool(), Python control flow)",
    "is_nonzero": "bool() of a tensor",
    "equal": "torch.equal returns a Python bool",
    "nonzero": "output size depends on the data",
    "nonzero_numpy": "output size depends on the data",
    "argwhere": "output size depends on the data",
    "_unique": "output size depends on the data",
    "_unique2": "output size depends on the data",
    "unique_dim": "output size depends on the data",
    "unique_consecutive": "output size depends on the data",
    "unique_dim_consecutive": "output size depends on the data",
    "masked_select": "output size depends on the data",
    "bincount": "output size depends on the data",
    "histc": "range read from the data",
    "lift_fresh": "tensor from Python data inside the step (blocking host-to-device copy)",
    "lift_fresh_copy": "tensor from Python data inside the step (blocking host-to-device copy)",
}
_BOOL_INDEXED = {"index", "index_put", "index_put_", "_index_put_impl_"}
_HOST_METHODS = ("tolist", "numpy", "cpu", "__array__")
_SKIP_PREFIXES = ("torch", "fgclip.modeling.host_sync", "contextlib", "typing")


@dataclass(frozen=True)
class SyncEvent:
    """One op that waits: its aten name, why, and the innermost caller outside torch."""

    op: str
    reason: str
    origin: str


def _is_bool_tensor(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and x.dtype in (torch.bool, torch.uint8)


def sync_reason(name: str, args: tuple, kwargs: dict) -> str | None:
    """Why the aten op `name` (overload packet name) called with these arguments waits, or None."""
    if name in _DATA_DEPENDENT:
        return _DATA_DEPENDENT[name]
    if name in _BOOL_INDEXED:
        indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
        if any(_is_bool_tensor(i) for i in indices or ()):
            return "boolean-mask indexing (nonzero)"
        return None
    if name == "repeat_interleave":
        repeats = args[1] if len(args) > 1 else kwargs.get("repeats")
        tensor_repeats = isinstance(args[0], torch.Tensor) and args[0].dtype == torch.long and len(args) == 1
        if (isinstance(repeats, torch.Tensor) or tensor_repeats) and kwargs.get("output_size") is None:
            return "repeat_interleave without output_size"
        return None
    if name == "_to_copy":  # between device types: host <-> accelerator
        src, device = args[0], kwargs.get("device")
        if device is not None and torch.device(device).type != src.device.type:
            return f"copy {src.device} -> {device}"
        return None
    if (
        name == "copy_"
        and len(args) > 1
        and isinstance(args[1], torch.Tensor)
        and args[0].device.type != args[1].device.type
    ):
        return f"copy {args[1].device} -> {args[0].device}"
    return None


def _origin() -> str:
    """`module:function:line` of the innermost frame outside torch (the code that asked for the op);
    ops of the backward pass are marked as such (their frame is the `.backward()` call)."""
    backward = "backward of " if torch._C._current_graph_task_id() != -1 else ""
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not module.startswith(_SKIP_PREFIXES):
            return f"{backward}{module}:{frame.f_code.co_name}:{frame.f_lineno}"
        frame = frame.f_back
    return f"{backward}(no Python caller)"


class HostSyncCounter(TorchDispatchMode):
    """Context manager recording every op that would make the host wait (see the module docstring).

    with HostSyncCounter() as syncs:
        step()
    assert syncs.events == []
    """

    def __init__(self) -> None:
        super().__init__()
        self.events: list[SyncEvent] = []
        self._originals: dict[str, Any] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        reason = sync_reason(func.overloadpacket.__name__, args, kwargs)
        if reason is not None:
            self.events.append(SyncEvent(func.overloadpacket.__name__, reason, _origin()))
        return func(*args, **kwargs)

    def _wrap(self, name: str):
        original = self._originals[name]
        events = self.events

        def method(tensor, *args, **kwargs):
            events.append(SyncEvent(f"Tensor.{name}", "host read outside the dispatcher", _origin()))
            return original(tensor, *args, **kwargs)

        return method

    def __enter__(self):
        for name in _HOST_METHODS:
            self._originals[name] = getattr(torch.Tensor, name)
            setattr(torch.Tensor, name, self._wrap(name))
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            for name, method in self._originals.items():
                setattr(torch.Tensor, name, method)
            self._originals = {}

    def counts(self) -> Counter:
        """op -> how many times it ran."""
        return Counter(event.op for event in self.events)

    def by_origin(self) -> Counter:
        """(op, origin) -> how many times."""
        return Counter((event.op, event.origin) for event in self.events)


__all__ = ["HostSyncCounter", "SyncEvent", "sync_reason"]
