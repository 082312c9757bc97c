"""The field values of a Trainer's `training_args.bin`, read without unpickling it.

The Trainer saves its `TrainingArguments` with `torch.save`: a zip holding `<name>/data.pkl`, a pickle that
rebuilds the dataclass (and its enums) by importing and calling transformers' classes.
`torch.load(weights_only=True)` refuses it, and unpickling it any other way would run whatever a hostile file
asks for.
It holds what check-config needs most (batch size, gradient accumulation, learning rates, clipping,
precision, the DeepSpeed config), so its opcodes are interpreted here as plain data: `pickletools.genops`
only parses them; strings, numbers, containers and memo references become Python values, every class or
function reference becomes an inert `Opaque` (its dotted name, and the arguments it would have been called
with), and nothing is imported, called or executed. An opcode outside that set (persistent ids, extension
codes, ...) stops the read with `PickleFieldsError`.
"""

from __future__ import annotations

import pickletools
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_PICKLE_BYTES = 4 << 20  # a TrainingArguments pickle is ~5 KB
MAX_OPS = 200_000


class PickleFieldsError(ValueError):
    """The file is not a pickle this reader can interpret as data."""


@dataclass
class Opaque:
    """What a class or function reference (and a call of it) would have built; never built."""

    name: str
    args: tuple[Any, ...] = ()
    state: Any = None
    items: dict[Any, Any] = field(default_factory=dict)


_MARK = object()
_PLAIN = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}
_PUSH_ARG = {
    "INT",
    "BININT",
    "BININT1",
    "BININT2",
    "LONG",
    "LONG1",
    "LONG4",
    "FLOAT",
    "BINFLOAT",
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
    "UNICODE",
    "BINUNICODE",
    "SHORT_BINUNICODE",
    "BINUNICODE8",
    "BINBYTES",
    "SHORT_BINBYTES",
    "BINBYTES8",
    "BYTEARRAY8",
}
_NOOP = {"PROTO", "FRAME"}


def _pop_mark(stack: list[Any]) -> list[Any]:
    for i in range(len(stack) - 1, -1, -1):
        if stack[i] is _MARK:
            items = stack[i + 1 :]
            del stack[i:]
            return items
    raise PickleFieldsError("MARK missing")


def _setitems(target: Any, pairs: list[Any]) -> None:
    store = target if isinstance(target, dict) else getattr(target, "items", None)
    if not isinstance(store, dict):
        raise PickleFieldsError("SETITEM on a value that is not a dict")
    for key, value in zip(pairs[::2], pairs[1::2], strict=True):
        try:
            store[key] = value
        except TypeError:  # an unhashable key: keep its text
            store[repr(key)] = value


def _step(name: str, arg: Any, stack: list[Any], memo: dict[Any, Any]) -> None:
    if name in _PLAIN:
        stack.append(_PLAIN[name])
    elif name in _PUSH_ARG:
        stack.append(arg)
    elif name == "MARK":
        stack.append(_MARK)
    elif name in ("EMPTY_DICT", "EMPTY_LIST", "EMPTY_TUPLE", "EMPTY_SET"):
        stack.append({"EMPTY_DICT": {}, "EMPTY_LIST": [], "EMPTY_TUPLE": (), "EMPTY_SET": set()}[name])
    elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
        n = int(name[-1])
        top = tuple(stack[-n:])
        del stack[-n:]
        stack.append(top)
    elif name in ("TUPLE", "LIST", "DICT", "FROZENSET"):
        items = _pop_mark(stack)
        stack.append(
            tuple(items)
            if name == "TUPLE"
            else items
            if name == "LIST"
            else dict(zip(items[::2], items[1::2], strict=True))
            if name == "DICT"
            else frozenset(repr(i) for i in items)
        )
    elif name in ("APPEND", "APPENDS", "ADDITEMS"):
        added = [stack.pop()] if name == "APPEND" else _pop_mark(stack)
        target = stack[-1]
        if isinstance(target, list):
            target.extend(added)
        elif isinstance(target, set):
            target.update(repr(i) for i in added)
        else:
            raise PickleFieldsError(f"{name} on a {type(target).__name__}")
    elif name in ("SETITEM", "SETITEMS"):
        pairs = stack[-2:] if name == "SETITEM" else _pop_mark(stack)
        if name == "SETITEM":
            del stack[-2:]
        _setitems(stack[-1], pairs)
    elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
        memo[arg] = stack[-1]
    elif name == "MEMOIZE":
        memo[len(memo)] = stack[-1]
    elif name in ("GET", "BINGET", "LONG_BINGET"):
        stack.append(memo[arg])
    elif name == "GLOBAL":
        stack.append(Opaque(str(arg).replace(" ", ".")))
    elif name == "STACK_GLOBAL":
        attr, module = stack.pop(), stack.pop()
        stack.append(Opaque(f"{module}.{attr}"))
    elif name in ("REDUCE", "NEWOBJ"):
        args, func = stack.pop(), stack.pop()
        stack.append(
            Opaque(getattr(func, "name", repr(func)), tuple(args) if isinstance(args, tuple) else ())
        )
    elif name == "NEWOBJ_EX":
        _kwargs, args, cls = stack.pop(), stack.pop(), stack.pop()
        stack.append(Opaque(getattr(cls, "name", repr(cls)), tuple(args) if isinstance(args, tuple) else ()))
    elif name == "BUILD":
        state = stack.pop()
        target = stack[-1]
        if not isinstance(target, Opaque):
            raise PickleFieldsError(f"BUILD on a {type(target).__name__}")
        target.state = state
    elif name == "POP":
        stack.pop()
    elif name == "POP_MARK":
        _pop_mark(stack)
    elif name == "DUP":
        stack.append(stack[-1])
    elif name not in _NOOP:
        raise PickleFieldsError(f"opcode {name} is not plain data")


def read_pickle_data(data: bytes) -> Any:
    """Interpret a pickle's opcodes as data (see the module docstring); never imports or calls anything."""
    stack: list[Any] = []
    memo: dict[Any, Any] = {}
    try:
        for count, (op, arg, _) in enumerate(pickletools.genops(data)):
            if count > MAX_OPS:
                raise PickleFieldsError(f"more than {MAX_OPS} opcodes")
            if op.name == "STOP":
                if len(stack) != 1:
                    raise PickleFieldsError("the stack does not end with one value")
                return stack[0]
            _step(op.name, arg, stack, memo)
    except PickleFieldsError:
        raise
    except (ValueError, IndexError, KeyError, TypeError, RecursionError) as exc:
        raise PickleFieldsError(f"malformed pickle ({type(exc).__name__}: {str(exc)[:120]})") from None
    raise PickleFieldsError("no STOP opcode")


def plain(value: Any) -> Any:
    """An enum member (`SchedulerType('cosine')`: a class called with one value) as that value; a function
    call (`os.system('...')`) and everything else unchanged."""
    if (
        isinstance(value, Opaque)
        and value.name.rsplit(".", 1)[-1][:1].isupper()
        and len(value.args) == 1
        and isinstance(value.args[0], (str, int, float))
    ):
        return value.args[0]
    return value


def training_arguments(path: Path) -> tuple[str, dict[str, Any]]:
    """(class name, field -> value) of a `torch.save`d TrainingArguments; PickleFieldsError otherwise."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
            if len(names) != 1:
                raise PickleFieldsError("not a torch.save archive (no single <name>/data.pkl)")
            if archive.getinfo(names[0]).file_size > MAX_PICKLE_BYTES:
                raise PickleFieldsError(f"{names[0]} is larger than {MAX_PICKLE_BYTES} bytes")
            data = archive.read(names[0])
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise PickleFieldsError(f"not a readable torch.save archive ({exc})") from None
    root = read_pickle_data(data)
    if not isinstance(root, Opaque) or not isinstance(root.state, dict):
        raise PickleFieldsError("the pickle does not hold an arguments object")
    return root.name, {str(k): plain(v) for k, v in root.state.items()}


__all__ = ["Opaque", "PickleFieldsError", "plain", "read_pickle_data", "training_arguments"]
