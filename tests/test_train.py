"""Fast checks of the entry point: override shorthands, config composition, deterministic output dirs."""
from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bcc.core.config import CONF_DIR, normalize_overrides, with_override
from bcc.core.errors import UsageError
from bcc.core.layout import stage_dir
from bcc.core.settings import BackboneConfig, StageConfig, TrainConfig, ranges_of
from bcc.training.config import check_config, hint
from bcc.training.stages import MissingStageError, sequence, start_checkpoint


@pytest.mark.parametrize("given, expect", [
    (["fold=0-4"], ["fold=range(0,5)"]),
    (["fold=2-3", "stage=1,2,3"], ["fold=range(2,4)", "stage='1','2','3'"]),
    (["stage=all"], ["stage=all"]),
    (["stage=2"], ["stage='2'"]),
    (["fold=range(0,5)", "fold=0,1,2,3,4", "experiment=smoke"], ["fold=range(0,5)", "fold=0,1,2,3,4", "experiment=smoke"]),
    (["stage='3'", "data.root=/a/fold=0-4"], ["stage='3'", "data.root=/a/fold=0-4"]),
])
def test_normalize_overrides(given, expect):
    assert normalize_overrides(given) == expect


def test_descending_fold_range_is_refused():
    with pytest.raises(UsageError, match="fold=0-4"):
        normalize_overrides(["fold=4-0"])


def test_default_config(compose_cfg, tmp_path):
    cfg = compose_cfg()
    assert cfg.stage.name == 1 and cfg.fold == 0 and cfg.backbone.timm_name == "mobilenetv2_100"
    assert cfg.data.root == "data/synthetic" and cfg.paths.output_dir == "outputs/default"
    assert cfg.stage.lr == 1e-5 and cfg.stage.batch_size == 32 and cfg.stage.max_epochs == 100  # paper §2.4
    assert cfg.model.net.dropout == 0.3 and cfg.logger._target_.endswith("WandbLogger") and cfg.logger.offline
    assert cfg.loss.gamma == 2.0 and cfg.optimizer.warmup_steps == 0  # the stage's, by interpolation
    check_config(cfg)
    OmegaConf.save(cfg, tmp_path / "config.yaml", resolve=True)
    assert OmegaConf.load(tmp_path / "config.yaml").data.root == "data/synthetic"


@pytest.mark.parametrize("stage", ["0", "1", "2", "3"])
def test_every_stage_composes(compose_cfg, stage):
    cfg = compose_cfg([f"stage={stage}"])
    assert cfg.stage.name == int(stage) and cfg.stage.trainable and cfg.stage.monitor.startswith("val/")
    check_config(cfg)


def test_experiments_override_stages_and_the_command_line_wins(compose_cfg):
    demo = compose_cfg(["experiment=demo", "stage=2"])
    assert demo.experiment_name == "demo" and demo.data.image_size == 64
    assert demo.stage.max_epochs != 150  # conf/experiment_stage/demo/2.yaml
    assert compose_cfg(["experiment=demo", "stage=2", "stage.lr=0.5"]).stage.lr == 0.5
    smoke = compose_cfg(["experiment=smoke", "stage=0"])
    assert smoke.stage.max_epochs == 2 and smoke.data.image_size <= 64
    assert compose_cfg(["experiment=smoke", "stage=3"]).stage.max_epochs == 1
    paper = compose_cfg(["experiment=paper"])  # every stage and fold of the user's dataset, ImageNet weights
    assert paper.backbone.pretrained and paper.data.image_size == 224 and str(paper.stage.name) == "all"
    assert paper.data.root is None  # yours to give: unset, it is refused by name (test_bad_inputs)
    assert compose_cfg(["experiment=paper", "stage=1", "data.root=/x"]).stage.lr == 1e-5
    for b in ("convnext", "vit"):
        assert compose_cfg([f"backbone={b}"]).backbone.name == b
    assert compose_cfg(["logger=csv"]).logger._target_.endswith("CSVLogger")
    assert compose_cfg(["data=csv", "data.root=/x"]).data.generate is None


def test_output_dirs_are_deterministic():
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=normalize_overrides(["stage=2", "fold=3", "experiment=smoke"]),
                      return_hydra_config=True)
        assert OmegaConf.select(cfg, "hydra.run.dir") == "."  # bcc makes the job folder itself, once checked
        assert OmegaConf.select(cfg, "hydra.sweep.dir") == "outputs/smoke"
        assert OmegaConf.select(cfg, "hydra.output_subdir") is None
    assert cfg.paths.job_dir == str(stage_dir("outputs/smoke", "mobilenet", 3, 2))  # yaml and layout agree
    assert str(stage_dir("o", "vit", 1, 0)) == "o/vit/fold1/stage0"


def test_stage_sequence_and_predecessors(tmp_path):
    scratch, imagenet = {"name": "mobilenet", "pretrained": False}, {"name": "mobilenet", "pretrained": True}
    assert sequence("all", scratch) == [0, 1, 2, 3] and sequence("all", imagenet) == [1, 2, 3]
    assert sequence(2, scratch) == [2]
    assert start_checkpoint(tmp_path, imagenet, 0, 1) == (None, False)
    path, backbone_only = start_checkpoint(tmp_path, scratch, 0, 1)
    assert path == tmp_path / "mobilenet/fold0/stage0/best.ckpt" and backbone_only
    with pytest.raises(MissingStageError, match=r"python -m bcc.train stage=2 fold=4 experiment=smoke"):
        start_checkpoint(tmp_path, scratch, 4, 3, rerun_hint="experiment=smoke")


def test_override_helpers():
    assert with_override(["stage='1'", "fold=2"], "stage", "'0'") == ["fold=2", "stage='0'"]
    assert hint(["stage='1'", "fold=2", "experiment=smoke", "hydra.verbose=true"]) == "experiment=smoke"


def test_stage0_trains_with_its_own_gamma_and_warmup(compose_cfg):
    """Stage 0 stands in for ImageNet pretraining: plain (alpha-weighted) BCE with a warmup; the paper's
    stages keep the focal gamma 2. Both are the stage's own, read by interpolation; an override of
    loss.gamma / optimizer.warmup_steps wins for every stage."""
    from types import SimpleNamespace

    from bcc.training.protocol import build_module

    dm = SimpleNamespace(positive_frequencies=lambda: [0.5] * 8)
    built = {}
    for stage, extra in (("0", []), ("1", []), ("0", ["loss.gamma=2.5", "optimizer.warmup_steps=7"])):
        cfg = compose_cfg([f"stage={stage}", *extra])
        model = build_module(cfg, dm, load_pretrained=False)
        built[(stage, bool(extra))] = (model.loss_fn.gamma, model.configure_optimizers().defaults["warmup_steps"])
    assert built[("0", False)] == (0.0, 30)
    assert built[("1", False)] == (2.0, 0)
    assert built[("0", True)] == (2.5, 7)


@pytest.mark.parametrize("override, key", [
    ("+data.image_sz=64", "data.image_sz"),
    ("+stage.lrr=0.1", "stage.lrr"),
    ("+model.net.drop=0.1", "model.net.drop"),
    ("+trainer.max_epoch=3", "trainer.max_epoch"),
    ("+loss.gama=1", "loss.gama"),
    ("+callbacks.best_checkpoint.monitr=x", "callbacks.best_checkpoint.monitr"),
    ("+speed=fast", "speed"),
])
def test_an_unknown_key_is_an_error_naming_it(compose_cfg, override, key):
    with pytest.raises(UsageError, match=key.replace(".", r"\.")):
        check_config(compose_cfg([override]))


def test_a_typo_in_an_experiment_file_is_an_error_naming_it(compose_cfg, tmp_path, monkeypatch):
    """An experiment file merges into the config (Hydra accepts new keys there): the check catches them."""
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    (conf / "experiment" / "typo.yaml").write_text("# @package _global_\ndata:\n  image_sz: 64\n")
    monkeypatch.setattr("bcc.training.config.CONF_DIR", conf)
    with pytest.raises(UsageError, match=r"data\.image_sz"):
        check_config(compose_cfg(["experiment=typo"]))


def test_the_plain_nodes_are_structured_configs(compose_cfg, tmp_path, monkeypatch):
    """The top level, stage, backbone, paths and external are typed by ``core.settings``: their keys are the
    dataclass's fields, a typo in a stage file stops the composition naming the key, and one added with ``+``
    (which Hydra lets through) is refused by the check."""
    import dataclasses
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    (conf / "stage" / "2.yaml").write_text((conf / "stage" / "2.yaml").read_text() + "warmup_step: 5\n")
    monkeypatch.setattr("bcc.training.config.CONF_DIR", conf)
    with pytest.raises(UsageError, match=r"warmup_step.*not in 'StageConfig'"):
        compose_cfg(["stage=2"])
    monkeypatch.undo()
    cfg = compose_cfg([])
    assert set(cfg.stage) == {f.name for f in dataclasses.fields(StageConfig)}
    assert set(cfg.backbone) == {f.name for f in dataclasses.fields(BackboneConfig)}
    with pytest.raises(UsageError, match=r"unknown config key external\.sorce"):
        check_config(compose_cfg(["experiment=external", "+external.sorce=x"]))


def test_ranges_are_declared_beside_their_fields():
    ranges = ranges_of(TrainConfig)
    assert ranges["stage.lr"].describe() == "a number in (0, 1]"
    assert ranges["data.image_size"].describe().startswith("a whole number in [16, 4096]")
    assert ranges["model.net.dropout"].high_open and "external.batch_size" in ranges
