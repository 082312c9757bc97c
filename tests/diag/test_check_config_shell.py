"""The launch-script reader agrees with bash (issue 14 item 9): each script below is run by real bash with
`python`/`torchrun` replaced by a function that prints its arguments, and the reader must find exactly the
training arguments bash passed. Before: a command inside a here-document was taken as the launch, and
arguments after a `# comment \\` line were read as part of the command (bash ends it at the comment)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from fgdiag.static.shell_script import read_script

SHIM = 'python() { printf "%s\\0" "$@" > "$ARGS_OUT"; }\ntorchrun() { python "$@"; }\n'

SCRIPTS = {
    "heredoc": """\
cat > /dev/null <<EOF
python -m fgclip.train --max_steps 1 --learning_rate 9
EOF
python -m fgclip.train --max_steps 400 --learning_rate 1e-5
""",
    "quoted-heredoc-with-dash": """\
if true; then
\tcat > /dev/null <<-'END'
\tpython -m fgclip.train --max_steps 2
\tEND
fi
python -m fgclip.train --max_steps 40
""",
    "comment-backslash": """\
python -m fgclip.train --max_steps 400 \\
    --learning_rate 1e-5 \\
    # --warmup_steps 10 \\
    --weight_decay 0.1
""",
    "comment-after-arguments": """\
python -m fgclip.train --max_steps 400 \\
    --learning_rate 1e-5 # --weight_decay 0.1 \\
    --bf16 true
""",
    "hash-inside-words-and-quotes": """\
RUN=a#b
python -m fgclip.train --run_name "x # y" --output_dir out#1 --logging_dir $RUN \\
    --max_steps 3
""",
    "quote-spanning-lines": """\
python -m fgclip.train --run_name 'two
lines' --max_steps 5 \\
    --learning_rate 2e-5
""",
    "herestring-and-shift": """\
N=$(( 1 << 3 ))
cat <<< "python -m fgclip.train --max_steps 9"
torchrun --nproc_per_node 2 -m fgclip.train --max_steps 12 --gradient_accumulation_steps 2
""",
}


def bash_arguments(script: Path, tmp_path: Path) -> dict[str, str]:
    """The `--name value` pairs bash passes after `-m fgclip.train`."""
    out = tmp_path / "args.txt"
    subprocess.run(
        ["bash", "-c", SHIM + f". {script}"],
        env={"ARGS_OUT": str(out), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=30,
    )
    argv = out.read_text().split("\0")[:-1]
    args = argv[argv.index("fgclip.train") + 1 :]
    pairs, i = {}, 0
    while i < len(args):
        name = args[i][2:]
        value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else "True"
        pairs[name] = value
        i += 2 if value != "True" else 1
    return pairs


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_reader_finds_what_bash_passes(tmp_path: Path, name: str) -> None:
    script = tmp_path / "train.sh"
    script.write_text(SCRIPTS[name])
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0  # valid bash
    expected = bash_arguments(script, tmp_path)
    info = read_script(script)
    read = {f.name: str(f.value) for f in info.values if f.name != "world_size"}
    assert read == expected, (name, read, expected)


def test_heredoc_launch_line_is_the_real_one(tmp_path: Path) -> None:
    script = tmp_path / "train.sh"
    script.write_text(SCRIPTS["heredoc"])
    info = read_script(script)
    assert info.launch_line == 4 and info.values.get("max_steps").line == 4  # type: ignore[union-attr]
    assert not any("launch commands" in n for n in info.notes)  # the heredoc's line is not a second launch
