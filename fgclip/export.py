"""`python -m fgclip.export SRC DST`: a fine-tuned FGCLIPModel checkpoint (or an OpenAI CLIP file, or an
upstream FG-CLIP folder) written as a plain transformers CLIPModel folder. Exit 0 written; 2 for an unreadable
or incomplete source, or a DST that exists and is not empty (nothing is written over)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fgclip.export",
        description=(
            "Export an FG-CLIP checkpoint's towers, projections and global scale as a CLIPModel folder."
        ),
    )
    parser.add_argument(
        "src", help="our checkpoint folder, an upstream FG-CLIP folder, or an OpenAI CLIP file"
    )
    parser.add_argument("dst", help="new (or empty) folder for the CLIPModel")
    parser.add_argument(
        "--tokenizer", default=None, help="tokenizer to save alongside (default: the source's)"
    )
    args = parser.parse_args(argv)
    from fgclip.weights.export import export_clip

    try:
        result = export_clip(args.src, args.dst, tokenizer=args.tokenizer)
    except (FileExistsError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
