"""The checkpoint callback's background file writes: in order, atomic, and failures not lost."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import torch

from src.callbacks.checkpoint import OrderedFileWriter, serialised, write_atomically


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
