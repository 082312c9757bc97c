"""Read the training command out of a launch script such as fgclip-vad's `scripts/train_ucf_full.sh`.

Real scripts set variables, `export` environment, wrap the command in `nohup`/`torchrun`/`deepspeed`,
continue it
over many lines with `\\`, and pipe it into `tee`. This module resolves what a static reader can (the script's
own assignments, `${VAR:-default}`) and reports what it cannot (`$NUM_GPUS` from the caller's environment,
`$(pwd)`), instead of guessing. Nothing is executed: tokens come from `shlex`.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from fgdiag.facts.values import ConfigValues, Field, InputError

PYTHON = re.compile(r"^python(\d(\.\d+)?)?$")
WRAPPERS = {"nohup", "exec", "time", "env", "stdbuf", "srun", "numactl"}
DECLARE = {"export", "declare", "local", "readonly", "typeset"}
OPERATORS = {"|", "||", "&&", ";", "&", ";;"}
REDIRECT = re.compile(r"^\d*(>>?|<|>&|&>)")
ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-=])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
TORCHRUN_MODULES = {"torch.distributed.run", "torch.distributed.launch"}


@dataclass
class Token:
    text: str
    line: int


@dataclass
class ScriptInfo:
    """What one script launches: the entry point, the launcher, its arguments (as Fields) and the gaps."""

    path: Path
    values: ConfigValues
    entry: str = ""  # the training script or module, e.g. fgclip/train/train_fgclip.py
    launcher: str = "python"  # python | torchrun | deepspeed | accelerate | fgclip-train
    launch_line: int = 0
    env: dict[str, str] = field(default_factory=dict)
    unresolved: list[str] = field(default_factory=list)  # "line 12: $NUM_GPUS (--nproc_per_node)"
    notes: list[str] = field(default_factory=list)


def _logical_lines(text: str) -> list[list[Token]]:
    """Join `\\` continuations; tokenise each physical piece so every token keeps its own line number."""
    out: list[list[Token]] = []
    pending: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.rstrip()
        continued = stripped.endswith("\\") and not stripped.endswith("\\\\")
        pending.append((number, stripped[:-1] if continued else stripped))
        if continued:
            continue
        tokens: list[Token] = []
        try:
            for line, piece in pending:
                tokens.extend(Token(t, line) for t in shlex.split(piece, comments=True))
        except ValueError:  # a quote spanning pieces: tokenise the joined line, all at its first line
            joined = " ".join(piece for _, piece in pending)
            try:
                tokens = [Token(t, pending[0][0]) for t in shlex.split(joined, comments=True)]
            except ValueError as exc:
                pending.clear()
                raise InputError("", f"cannot tokenise shell line: {exc}", line=number) from None
        pending.clear()
        if tokens:
            out.append(tokens)
    return out


def _expand(text: str, env: dict[str, str]) -> tuple[str, list[str]]:
    """Substitute the script's own variables; return the text and the names left unresolved."""
    missing: list[str] = []

    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(4)
        if name in env:
            return env[name]
        if match.group(2):  # ${VAR:-default} / ${VAR:=default}
            default = match.group(3) or ""
            if match.group(2) == "=":
                env[name] = default
            return default
        missing.append("$" + name)
        return match.group(0)

    expanded = VARIABLE.sub(repl, text)
    missing += [
        m.group(0) for m in VARIABLE.finditer(expanded) if m.group(0) not in missing
    ]  # via a variable
    if "$(" in expanded or "`" in expanded:
        missing.append(re.search(r"\$\([^)]*\)?|`[^`]*`?", expanded).group(0))  # type: ignore[union-attr]
    return expanded, missing


def _find_entry(tokens: list[Token]) -> tuple[str, int, int] | None:
    """(launcher, index of the entry token, index where launcher options start) or None for no launch."""
    i = 0
    while i < len(tokens) and (tokens[i].text in WRAPPERS or ASSIGN.match(tokens[i].text)):
        i += 1
    if i >= len(tokens):
        return None
    head = Path(tokens[i].text).name
    rest = range(i + 1, len(tokens))
    if head == "fgclip-train":
        return "fgclip-train", i, i + 1
    if PYTHON.match(head):
        for j in rest:
            text = tokens[j].text
            if text == "-m" and j + 1 < len(tokens):
                module = tokens[j + 1].text
                if module in TORCHRUN_MODULES:
                    entry = _script_after(tokens, j + 2)
                    return None if entry is None else ("torchrun", entry, j + 2)
                return "python", j + 1, j + 1
            if text.endswith(".py"):
                return "python", j, j
        return None
    if head in {"torchrun", "deepspeed"} or (
        head == "accelerate" and i + 1 < len(tokens) and tokens[i + 1].text == "launch"
    ):
        start = i + (2 if head == "accelerate" else 1)
        entry = _script_after(tokens, start)
        return None if entry is None else (head, entry, start)
    return None


def _script_after(tokens: list[Token], start: int) -> int | None:
    for j in range(start, len(tokens)):
        if tokens[j].text == "-m" and j + 1 < len(tokens):
            return j + 1
        if tokens[j].text.endswith(".py"):
            return j
    return None


def _launcher_options(tokens: list[Token]) -> dict[str, Token]:
    """`--opt value` / `--opt=value` pairs, names normalised to underscores."""
    options: dict[str, Token] = {}
    i = 0
    while i < len(tokens):
        text = tokens[i].text
        if text.startswith("--"):
            name, eq, value = text[2:].partition("=")
            name = name.replace("-", "_")
            if eq:
                options[name] = Token(value, tokens[i].line)
            elif i + 1 < len(tokens) and not tokens[i + 1].text.startswith("-"):
                options[name] = Token(tokens[i + 1].text, tokens[i].line)
                i += 1
            else:
                options[name] = Token("True", tokens[i].line)
        i += 1
    return options


def _world_size(launcher: str, options: dict[str, Token], env: dict[str, str], info: ScriptInfo) -> None:
    """Record `world_size` as an int, or as the unresolved launcher text (plan.py then assumes 1 and says
    so)."""
    shown = str(info.path)

    def put(value: str, line: int) -> None:
        info.values.set(Field("world_size", int(value) if value.isdigit() else value, shown, line))

    if launcher in {"python", "fgclip-train"}:
        put("1", info.launch_line)
        return
    procs = options.get("nproc_per_node") or options.get("num_gpus") or options.get("num_processes")
    nodes = options.get("nnodes") or options.get("num_nodes") or options.get("num_machines")
    if launcher == "deepspeed" and procs is None and "include" in options:
        hosts = options["include"].text.split("@")
        count = sum(len(h.split(":", 1)[1].split(",")) if ":" in h else 1 for h in hosts)
        procs = Token(str(count), options["include"].line)
    if procs is None and launcher == "deepspeed":
        visible = env.get("CUDA_VISIBLE_DEVICES")
        if visible and "$" not in visible:
            info.notes.append(
                f"deepspeed without --num_gpus uses every visible GPU: CUDA_VISIBLE_DEVICES={visible}"
            )
            procs = Token(str(len([v for v in visible.split(",") if v.strip()])), info.launch_line)
        else:
            put("deepspeed without --num_gpus (every visible GPU)", info.launch_line)
            return
    if procs is None:
        put("1", info.launch_line)
        info.notes.append(f"{launcher} without a process count: one process assumed")
        return
    if nodes is not None and nodes.text not in {"1", "True"}:
        if nodes.text.isdigit() and procs.text.isdigit():
            put(str(int(nodes.text) * int(procs.text)), procs.line)
        else:
            put(f"--nnodes {nodes.text} x --nproc_per_node {procs.text}", nodes.line)
        return
    put(procs.text if procs.text.isdigit() else f"process count {procs.text}", procs.line)


def read_script(path: Path) -> ScriptInfo:
    """Parse the first training launch of a shell script into a ScriptInfo (InputError if none is found)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc}") from None
    try:
        lines = _logical_lines(text)
    except InputError as exc:
        raise InputError(path, exc.reason, line=exc.line) from None
    env: dict[str, str] = {}
    info = ScriptInfo(path=path, values=ConfigValues())
    launches = 0
    for tokens in lines:
        words = [t.text for t in tokens]
        if words[0] in DECLARE or all(ASSIGN.match(w) for w in words):
            for token in tokens[1:] if words[0] in DECLARE else tokens:
                match = ASSIGN.match(token.text)
                if match:
                    env[match.group(1)] = _expand(match.group(2), env)[0]
            continue
        found = _find_entry(tokens)
        if found is None:
            continue
        launches += 1
        if launches > 1:
            continue
        launcher, entry, option_start = found
        local_env = dict(env)
        for token in tokens[:option_start]:
            match = ASSIGN.match(token.text)
            if match:
                local_env[match.group(1)] = _expand(match.group(2), local_env)[0]
        info.env, info.launcher, info.launch_line = local_env, launcher, tokens[entry].line
        info.entry = tokens[entry].text
        expanded = [Token(*_expanded_token(t, local_env, info)) for t in _until_operator(tokens)]
        _world_size(launcher, _launcher_options(expanded[option_start:entry]), local_env, info)
        _training_args(expanded[entry + 1 :], info)
    if launches == 0:
        raise InputError(
            path, "no training launch found (python/torchrun/deepspeed/accelerate ... train script)"
        )
    if launches > 1:
        info.notes.append(f"{path}: {launches} launch commands; checked the first (line {info.launch_line})")
    return info


def _until_operator(tokens: list[Token]) -> list[Token]:
    """The command itself: tokens before the first pipe, list operator or redirection."""
    for i, token in enumerate(tokens):
        text = token.text
        if text in OPERATORS or REDIRECT.match(text):  # `2>&1` is one token; `42 >f` keeps 42 an argument
            return tokens[:i]
    return tokens


def _expanded_token(token: Token, env: dict[str, str], info: ScriptInfo) -> tuple[str, int]:
    text, missing = _expand(token.text, env)
    for name in missing:
        info.unresolved.append(f"line {token.line}: {name} in {token.text!r}")
    return text, token.line


def _training_args(tokens: list[Token], info: ScriptInfo) -> None:
    shown = str(info.path)
    i = 0
    while i < len(tokens):
        text = tokens[i].text
        if text.startswith("--"):
            name, eq, value = text[2:].partition("=")
            line = tokens[i].line
            if not eq:
                nxt = tokens[i + 1].text if i + 1 < len(tokens) else None
                is_value = nxt is not None and (not nxt.startswith("-") or re.match(r"^-\d", nxt) is not None)
                value = nxt if is_value and nxt is not None else "True"
                i += 1 if is_value else 0
            info.values.set(Field(name.replace("-", "_"), value, shown, line))
        i += 1
