"""Two CPU processes (gloo): gathered global loss equals the single-process loss; queues are identical."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fgclip.modeling import FGCLIPModel

from .conftest import make_image_batch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, clip_dir: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = FGCLIPModel.from_pretrained(clip_dir, fgclip_overrides={"memory_bank_size": 32}).train()
        full = make_image_batch(b=4, seed=11)
        local = {k: v[rank * 2 : rank * 2 + 2] for k, v in full.items()}
        out = model(**local)
        out.loss.backward()
        torch.save(
            {
                "global_long": out.losses["global_long_loss"].detach(),
                "global_short": out.losses["global_short_loss"].detach(),
                "queue": model.memory_bank.image_queue.clone(),
                "keys": model.memory_bank.caption_keys.clone(),
                "fill": model.memory_bank.fill.clone(),
                "grad": model.logit_scale.grad.clone(),
            },
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


def test_two_rank_gather_and_queue(clip_dir, tmp_path):
    mp.start_processes(
        _worker, args=(2, _free_port(), str(clip_dir), str(tmp_path)), nprocs=2, start_method="spawn"
    )
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert torch.equal(r0["queue"], r1["queue"]) and torch.equal(r0["keys"], r1["keys"])
    assert r0["fill"].item() == r1["fill"].item() > 0
    single = FGCLIPModel.from_pretrained(clip_dir, fgclip_overrides={"memory_bank_size": 32}).train()
    ref = single(**make_image_batch(b=4, seed=11))
    for name in ("global_long", "global_short"):
        mean = (r0[name] + r1[name]) / 2
        assert torch.allclose(mean, ref.losses[f"{name}_loss"], atol=1e-5), name
    assert r0["fill"].item() == ref.stats["regions/valid"].item()
