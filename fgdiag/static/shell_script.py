"""Read the training command out of a launch script such as fgclip-vad's `scripts/train_ucf_full.sh`.

Real scripts set variables, `export` environment, wrap the command in `nohup`/`torchrun`/`deepspeed`,
continue it over many lines with `\\` (with comments among them), pipe it into `tee`, and write files with
here-documents; the lines are read as bash reads them (`_Lexer`). This module resolves what a static reader
can (the script's own assignments, `${VAR:-default}`) and reports what it cannot (`$NUM_GPUS` from the
caller's environment, `$(pwd)`), instead of guessing. Nothing is executed: tokens come from `shlex`.
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
HEREDOC_WORD = re.compile(r"""[ \t]*(?:'([^']*)'|"([^"]*)"|\\?([A-Za-z0-9_.\-]+))""")


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


@dataclass
class _Lexer:
    """Bash's line structure, as far as finding one command needs it: quotes (which may span lines), a
    backslash before the newline (a continuation, except inside single quotes or a comment), comments (an
    unquoted `#` at the start of a word runs to the end of the line, backslash included: bash ends the
    command there), and here-documents (`<<WORD` ... `WORD`: their lines are data, never a command)."""

    quote: str = ""  # the open quote character carried to the next line, or ""
    heredocs: list[tuple[str, bool]] = field(default_factory=list)  # (delimiter, strip leading tabs)

    def line(self, raw: str) -> tuple[str, bool]:
        """(the line's code without its comment and trailing backslash, whether the command continues)."""
        out: list[str] = []
        i, n = 0, len(raw)
        while i < n:
            c = raw[i]
            if self.quote == "'":
                self.quote = "" if c == "'" else self.quote
            elif c == "\\":
                if i == n - 1:  # backslash-newline: the command goes on (also inside double quotes)
                    return "".join(out), True
                out.append(raw[i : i + 2])
                i += 2
                continue
            elif self.quote == '"':
                self.quote = "" if c == '"' else self.quote
            elif c in "'\"":
                self.quote = c
            elif c == "#" and (i == 0 or raw[i - 1] in " \t;&|()"):
                return "".join(out), False  # a comment: the rest of the line, backslash included
            elif raw.startswith("<<<", i):  # a here-string: data on this line only
                out.append("<<<")
                i += 3
                continue
            elif raw.startswith("<<", i) and not _in_arithmetic(out):
                i = self._heredoc(raw, i + 2, out)
                continue
            out.append(c)
            i += 1
        return "".join(out), bool(self.quote)  # an open quote carries the command to the next line

    def _heredoc(self, raw: str, i: int, out: list[str]) -> int:
        strip = raw.startswith("-", i)
        match = HEREDOC_WORD.match(raw, i + strip)
        if match is None:
            out.append("<<")
            return i
        word = next(g for g in match.groups() if g is not None)
        self.heredocs.append((word, strip))
        out.append(raw[i - 2 : match.end()])
        return match.end()

    def ends_heredoc(self, raw: str) -> bool:
        """Inside a here-document: True when `raw` is its delimiter line (then the next one, if any)."""
        word, strip = self.heredocs[0]
        if (raw.lstrip("\t") if strip else raw) == word:
            self.heredocs.pop(0)
            return True
        return False


def _in_arithmetic(out: list[str]) -> bool:
    """`$(( 1 << 2 ))` shifts; it opens no here-document."""
    text = "".join(out)
    return text.count("((") > text.count("))")


def _tokens(pending: list[tuple[int, str]], number: int) -> list[Token]:
    """shlex tokens of one command's pieces, each with its own line (a quote spanning pieces: all at the
    first piece's line)."""
    try:
        return [Token(t, line) for line, piece in pending for t in shlex.split(piece)]
    except ValueError:
        joined = "\n".join(piece for _, piece in pending)
        try:
            return [Token(t, pending[0][0]) for t in shlex.split(joined)]
        except ValueError as exc:
            raise InputError("", f"cannot tokenise shell line: {exc}", line=number) from None


def _logical_lines(text: str) -> list[list[Token]]:
    """The script's commands as token lists, read as bash reads them (see `_Lexer`)."""
    out: list[list[Token]] = []
    pending: list[tuple[int, str]] = []
    lexer = _Lexer()
    for number, raw in enumerate(text.splitlines(), start=1):
        if lexer.heredocs and not pending:
            lexer.ends_heredoc(raw)
            continue
        code, continued = lexer.line(raw)
        pending.append((number, code))
        if continued:
            continue
        tokens = _tokens(pending, number)
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
