"""The SLURM launcher config composes and keeps every fold's stages in one task."""
from hydra import compose, initialize_config_dir

from bcc.train import CONF_DIR, normalize_overrides


def test_slurm_launcher_composes_for_the_protocol():
    overrides = normalize_overrides(["hydra/launcher=slurm", "stage=all", "fold=0-4",
                                     "backbone=mobilenet,convnext,vit", "hydra.launcher.partition=gpu"])
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[o for o in overrides if "," not in o and "range" not in o],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1 and launcher.timeout_min == 720
    assert cfg.stage.name == "all"  # one task runs the fold's stages in order
    assert "fold" in cfg.hydra.sweep.subdir and ".submitit" in launcher.submitit_folder
    assert overrides[2] == "fold=range(0,5)"
