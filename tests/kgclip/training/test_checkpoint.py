"""Reading checkpoints: a broken file is a one-line KgclipError; running out of memory or Ctrl-C is not the file's fault."""

import pytest
import torch

from kgclip.errors import KgclipError
from kgclip.training import checkpoint
from kgclip.training.checkpoint import load_checkpoint


def test_a_broken_file_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "step-0000001.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(KgclipError, match=r"step-0000001\.pt: not a readable kgclip checkpoint"):
        load_checkpoint(bad)


@pytest.mark.parametrize("error", [MemoryError, KeyboardInterrupt])
def test_out_of_memory_and_ctrl_c_while_reading_pass_through(tmp_path, monkeypatch, error):
    good = tmp_path / "step-0000001.pt"
    torch.save({"model": {}, "config": {}}, good)
    assert load_checkpoint(good) == {"model": {}, "config": {}}

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(checkpoint.torch, "load", fail)
    with pytest.raises(error):  # before: MemoryError became "not a file torch.save wrote"
        load_checkpoint(good)
