"""The paper's protocol under Lightning and Hydra: the data module, the module, the stages, one job or a chain
of them."""

__all__ = ["config", "datamodule", "ddp", "loggers", "module", "protocol", "stages", "summary"]
