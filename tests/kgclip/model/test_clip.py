"""Creating CLIP towers: a bad ``model.pretrained`` file fails in one line naming it, and nothing in it runs."""

import os
import pickle

import pytest
import torch

from kgclip.errors import ConfigError, KgclipError
from kgclip.model.clip import create_clip


class _Payload:
    """Unpickling this would make the folder ``path``: a stand-in for code hidden in a checkpoint."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.makedirs, (self.path,))


def _bad_files(tmp_path, tiny_clip):
    ran = tmp_path / "payload-ran"
    files = {}
    (tmp_path / "empty.pt").write_bytes(b"")
    files["empty.pt"] = "the file is empty"
    (tmp_path / "garbage.pt").write_bytes(b"\x00\x01 this is not a checkpoint " * 20)
    files["garbage.pt"] = "not a PyTorch checkpoint"
    (tmp_path / "notes.pt").write_text("weights: see the wiki\n")
    files["notes.pt"] = "not a PyTorch checkpoint"
    with open(tmp_path / "pickle.pt", "wb") as f:
        pickle.dump({"state_dict": _Payload(str(ran))}, f)
    files["pickle.pt"] = "holds pickled Python objects"
    torch.save({"state_dict": tiny_clip.model.state_dict(), "extra": _Payload(str(ran))}, tmp_path / "torch_pickle.pt")
    files["torch_pickle.pt"] = "holds pickled Python objects"
    torch.save({"state_dict": tiny_clip.model.state_dict()}, tmp_path / "good.pt")
    (tmp_path / "truncated.pt").write_bytes((tmp_path / "good.pt").read_bytes()[:4096])
    files["truncated.pt"] = "not a PyTorch checkpoint or damaged"
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    files["tensor.pt"] = "holds a Tensor, not CLIP weights"
    torch.save({"state_dict": {}}, tmp_path / "nothing.pt")
    files["nothing.pt"] = r"holds a dict \(empty\)"
    (tmp_path / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    files["bad.safetensors"] = "not a readable safetensors file"
    return files, ran


def test_bad_pretrained_files_fail_in_one_line_naming_the_file(tmp_path, tiny_clip):
    files, ran = _bad_files(tmp_path, tiny_clip)
    for name, reason in files.items():
        with pytest.raises(ConfigError, match=rf"model.pretrained {tmp_path / name}: .*{reason}") as err:
            create_clip("kgclip-tiny", str(tmp_path / name))
        assert isinstance(err.value, KgclipError) and "\n" not in str(err.value), name
    assert not ran.exists()  # the pickled payloads were refused, never run
    create_clip("kgclip-tiny", str(tmp_path / "good.pt"))  # the good one still loads
