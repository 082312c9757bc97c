"""Text repair for display: undo the double encoding seen in logs from mixed-locale machines.

The parsers never need this (they anchor on ASCII); it only makes event messages readable again, e.g. the
fork's `[Memory Bank] âœ… å·²å¯ç”¨` back to `[Memory Bank] ✅ 已启用`. Bytes that cp1252 cannot map were lost
when the text was produced; they come back as U+FFFD.
"""

from __future__ import annotations

_MARKERS = ("Ã", "Â", "â€", "å", "ä", "æ", "ç", "è", "é", "ï¼", "ðŸ")


def _to_bytes(text: str) -> bytes:
    out = bytearray()
    for ch in text:
        code = ord(ch)
        if code < 0x80:
            out.append(code)
            continue
        try:
            out += ch.encode("cp1252")
        except UnicodeEncodeError:
            if code < 0x100:
                out.append(code)  # 0x81, 0x8d, 0x8f, 0x90, 0x9d: bytes cp1252 leaves undefined
            # anything else (U+FFFD) stands for a lost byte: leave it out, the decoder marks the gap
    return bytes(out)


def demojibake(text: str) -> str:
    """Best-effort reversal of `s.encode('utf-8').decode('cp1252')`; returns `text` unchanged when it does
    not look double-encoded or the reversal would lose more than it restores."""
    if text.isascii() or not any(m in text for m in _MARKERS):
        return text
    repaired = _to_bytes(text).decode("utf-8", "replace")
    if repaired.count("\ufffd") * 4 > len(repaired):
        return text
    return repaired
