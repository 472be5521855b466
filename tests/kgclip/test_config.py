"""The config loader: types, choices, ranges and lengths checked once, errors naming the key."""

from dataclasses import dataclass, field, replace
from typing import Annotated, Literal

import pytest

from kgclip.config import Range, apply_overrides, check, from_dict, load_yaml, to_dict
from kgclip.errors import ConfigError
from kgclip.training import RunConfig
from kgclip.training.config import uses_fusion


@dataclass
class Inner:
    mode: Literal["pad", "drop"] = "pad"
    size: Annotated[int, Range(ge=1)] = 4
    ratio: Annotated[float, Range(ge=0, le=1)] = 0.5
    pair: tuple[float, float] = (0.1, 0.2)
    maybe: Annotated[int, Range(ge=0)] | None = None


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    names: list[str] = field(default_factory=list)


@pytest.mark.parametrize(("data", "message"), [
    ({"inner": {"mode": "fill"}}, r"^inner.mode: expected one of 'pad', 'drop', got 'fill'$"),
    ({"inner": {"size": 0}}, r"^inner.size: must be >= 1, got 0$"),
    ({"inner": {"size": 2.5}}, r"^inner.size: expected an integer, got 2.5$"),
    ({"inner": {"ratio": 1.5}}, r"^inner.ratio: must be <= 1, got 1.5$"),
    ({"inner": {"ratio": "nan"}}, r"^inner.ratio: expected a finite number, got 'nan'$"),
    ({"inner": {"ratio": float("inf")}}, r"^inner.ratio: expected a finite number, got inf$"),
    ({"inner": {"pair": [1.0]}}, r"^inner.pair: expected 2 items, got 1 \(\[1.0\]\)$"),
    ({"inner": {"pair": [1.0, "x"]}}, r"^inner.pair\[1\]: expected a number, got 'x'$"),
    ({"inner": {"maybe": -1}}, r"^inner.maybe: must be >= 0, got -1$"),
    ({"inner": {"maybe": "a"}}, r"^inner.maybe: expected an integer, got 'a'$"),
    ({"inner": 3}, r"^inner: expected a mapping of Inner fields, got 3$"),
    ({"names": "abc"}, r"^names: expected a list, got 'abc'$"),
    ({"inner": {"sise": 3}}, r"^unknown config key 'inner.sise'; did you mean inner.size"),
])
def test_bad_values_are_one_line_errors_naming_the_key(data, message):
    with pytest.raises(ConfigError, match=message) as exc:
        from_dict(Outer, data)
    assert "\n" not in str(exc.value)


def test_good_values_are_coerced():
    got = from_dict(Outer, {"inner": {"mode": "drop", "size": 1, "ratio": "0.25", "pair": [1, 2], "maybe": None}, "names": ["a"]})
    assert got == Outer(Inner("drop", 1, 0.25, (1.0, 2.0), None), ["a"])
    assert isinstance(got.inner.pair, tuple) and isinstance(got.inner.ratio, float)


def test_round_trip_and_check_of_a_config_built_in_code():
    cfg = RunConfig()
    assert from_dict(RunConfig, to_dict(cfg)) == cfg
    assert check(cfg) == cfg
    with pytest.raises(ConfigError, match=r"^train.steps: must be >= 1, got 0$"):
        check(replace(cfg, train=replace(cfg.train, steps=0)))


@pytest.mark.parametrize(("override", "message"), [
    ("train.checkpoint_every=0", r"train.checkpoint_every: must be >= 1, got 0"),
    ("train.log_every=0", r"train.log_every: must be >= 1, got 0"),
    ("train.steps=-1", r"train.steps: must be >= 1, got -1"),
    ("optim.tower_lr=nan", r"optim.tower_lr: expected a finite number, got 'nan'"),
    ("optim.betas=[0.9]", r"optim.betas: expected 2 items"),
    ("optim.accum_steps=0", r"optim.accum_steps: must be >= 1"),
    ("data.uneven=fill", r"data.uneven: expected one of 'pad', 'drop', got 'fill'"),
    ("train.precision=fp16", r"train.precision: expected one of 'auto', 'fp32', 'bf16', got 'fp16'"),
    ("train.teacher=frozen", r"train.teacher: expected one of 'start', 'none'"),
    ("train.device=tpu", r"train.device: expected one of 'auto', 'cpu', 'cuda'"),
    ("data.fanouts=[2,-1]", r"data.fanouts\[1\]: must be >= 0, got -1"),
    ("data.image_cache=yes", r"data.image_cache: expected one of 'auto', 'off', got 'on'"),
    ("data.image_cache=maybe", r"data.image_cache: expected one of 'auto', 'off', got 'maybe'"),
    ("loss.e2e=-1", r"loss.e2e: must be >= 0, got -1"),
    ("loss.kd_temperature=0", r"loss.kd_temperature: must be > 0, got 0"),
    ("loss.kd_mode=kl", r"loss.kd_mode: expected one of 'logits', 'features', got 'kl'"),
    # each of these crashed (a traceback) or trained nonsense with rc 0 before the loader checked it
    ("seed=-1", r"^seed: must be >= 0, got -1$"),
    ("seed=4294967296", r"^seed: must be < 4294967296, got 4294967296$"),
    ("model.fusion_width=0", r"^model.fusion_width: must be >= 1, got 0$"),
    ("model.fusion_heads=3", r"^model.fusion_width \(1024\) must be a multiple of model.fusion_heads \(3\)$"),
    ("model.max_text_tokens=0", r"^model.max_text_tokens: must be >= 1, got 0$"),
    ("model.drop_path=1", r"^model.drop_path: must be < 1, got 1.0$"),
    ("model.init_temperature=0", r"^model.init_temperature: must be > 0, got 0.0$"),
    ("data.source_weights=5", r"^data.source_weights: expected a mapping, got 5$"),
    ("data.source_weights={vg: .nan}", r"^data.source_weights.vg: expected a finite number, got nan$"),
])
def test_run_config_values_are_checked_by_the_loader(override, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(RunConfig, apply_overrides({}, [override]))


def test_uses_fusion_is_any_fusion_loss_part():
    cfg = RunConfig()
    assert uses_fusion(cfg)
    clip_only = replace(cfg, loss=replace(cfg.loss, e2e=0.0, e2r=0.0, g2e=0.0))
    assert not uses_fusion(clip_only)
    assert uses_fusion(replace(clip_only, loss=replace(clip_only.loss, g2e=0.5)))


def test_mappings_are_checked_item_by_item():
    @dataclass
    class Weights:
        by_name: dict[str, Annotated[float, Range(ge=0)]] | None = None

    assert from_dict(Weights, {"by_name": {"a": 1, "b": "0.5"}}).by_name == {"a": 1.0, "b": 0.5}
    assert from_dict(Weights, {"by_name": None}).by_name is None
    with pytest.raises(ConfigError, match=r"^by_name.b: must be >= 0, got -2.0$"):
        from_dict(Weights, {"by_name": {"a": 1, "b": -2}})


def test_a_finetune_config_is_checked_like_a_training_one():
    from kgclip.finetune.config import load_config

    for override, message in (("eval_batch_size=0", r"^eval_batch_size: must be >= 1"), ("num_workers=-1", r"^num_workers: must be >= 0"),
                              ("head_hidden=-1", r"^head_hidden: must be >= 0"), ("seed=-3", r"^seed: must be >= 0"),
                              ("model.fusion_heads=5", r"^model.fusion_width \(1024\) must be a multiple of model.fusion_heads \(5\)$")):
        with pytest.raises(ConfigError, match=message):
            load_config("snli-ve", {}, [override])
    with pytest.raises(ConfigError, match=r"^num_answers: must be >= 1"):
        load_config("vqa", {}, ["num_answers=0"])


@pytest.mark.parametrize(("content", "message"), [(b"\xff\xfe\x00garbage", r"bad.yaml: not a UTF-8 text file \(invalid start byte at byte 0\)$"),
                                                (b"a: [1,\n", r"bad.yaml: invalid YAML \("), (b"- 1\n", r"bad.yaml: expected a mapping at the top level$")])
def test_a_config_file_that_is_not_yaml_is_one_line(tmp_path, content, message):
    (tmp_path / "bad.yaml").write_bytes(content)  # before: a UnicodeDecodeError traceback for the first
    with pytest.raises(ConfigError, match=message):
        load_yaml(tmp_path / "bad.yaml")
