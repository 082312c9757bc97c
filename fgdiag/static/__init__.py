"""Readers for check-config: configs, launch scripts, safetensors headers, checkpoints and data sets, and
the quarantine that moves stale checkpoints aside. They produce facts (`fgdiag.facts`); rules judge them and
`fgdiag.check.check_paths` joins the two."""
