"""The checkpoint callback's held saves and background file writes: copies that later steps leave
alone, writes in order, atomic, and failures not lost."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

from src.callbacks.checkpoint import OrderedFileWriter, serialised, snapshot, write_atomically


def train_one_step(net: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    optimizer.zero_grad()
    net(torch.arange(4)).square().mean().backward()
    optimizer.step()


def test_a_snapshot_keeps_the_state_of_its_moment_with_tied_weights_tied() -> None:
    # An embedding whose output layer shares its weight, as a seq2seq decoder may tie them.
    net = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 5))
    net[1].weight = net[0].weight
    optimizer = torch.optim.Adam(net.parameters(), lr=0.1)
    train_one_step(net, optimizer)
    best_k_models = {"best.ckpt": torch.tensor(1.0)}  # live state a callback's state_dict hands out
    checkpoint = {
        "epoch": 1,
        "state_dict": net.state_dict(),
        "optimizer_states": [optimizer.state_dict()],
        "callbacks": {"checkpoint": {"best_k_models": best_k_models}},
    }
    expected = torch.load(io.BytesIO(serialised(checkpoint)), weights_only=True)  # what the old eager save wrote
    held = snapshot(checkpoint)
    train_one_step(net, optimizer)  # changes the weights and Adam's moments in place
    best_k_models["epoch=2.ckpt"] = torch.tensor(0.5)
    written = torch.load(io.BytesIO(serialised(held)), weights_only=True)
    torch.testing.assert_close(written, expected, rtol=0, atol=0)
    assert not torch.equal(written["state_dict"]["0.weight"], net.state_dict()["0.weight"])
    weights = written["state_dict"]
    assert weights["0.weight"].untyped_storage().data_ptr() == weights["1.weight"].untyped_storage().data_ptr()
    assert weights._metadata == net.state_dict()._metadata  # load_state_dict reads the modules' versions


def test_file_operations_run_in_the_order_submitted_off_the_caller_thread() -> None:
    writer, seen = OrderedFileWriter(), []
    release = threading.Event()
    writer.submit(release.wait)  # holds the thread: whatever follows waits behind it
    for i in range(5):
        writer.submit(lambda i=i: seen.append((i, threading.current_thread() is threading.main_thread())))
    assert seen == []  # submit returned without running anything
    release.set()
    writer.close()
    assert seen == [(i, False) for i in range(5)]


def test_a_failed_write_is_raised_on_the_caller_thread(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")
    writer = OrderedFileWriter()
    writer.submit(write_atomically, b"x", str(tmp_path / "a_file" / "best.ckpt"))  # a file is no directory
    with pytest.raises(OSError, match="a_file"):
        writer.wait()
    writer.close()


def test_writing_over_a_link_replaces_the_link_not_the_file_it_points_to(tmp_path: Path) -> None:
    best, last = tmp_path / "best.ckpt", tmp_path / "last.ckpt"
    write_atomically(serialised({"epoch": 1}), str(best))
    last.symlink_to(best.name)
    write_atomically(serialised({"epoch": 2}), str(last))
    assert not last.is_symlink()
    assert torch.load(best, weights_only=True) == {"epoch": 1}
    assert torch.load(last, weights_only=True) == {"epoch": 2}
    assert sorted(os.listdir(tmp_path)) == ["best.ckpt", "last.ckpt"]  # no partial file left beside them
