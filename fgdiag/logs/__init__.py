"""Log reading: `reader.LogReader` turns bytes into metric rows by step and point events, one small parser
object per format; `follow` tails a growing file. Judging a log lives above this package
(`fgdiag.session`)."""
