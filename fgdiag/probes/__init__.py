"""Read-only probes attached to a live model/optimizer. They keep device tensors; nothing syncs until a
logging step asks for `read()`."""
