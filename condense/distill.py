"""``python -m condense.distill`` (or ``condense-distill``): distil one task end to end, then evaluate it.

    python -m condense.distill task=ag_news distill.ipc=1 out=DIR
    python -m condense.distill --help

The config is parsed and checked here, once, before anything is loaded; :func:`condense.pipeline.distill_task`
does the work.
"""

import hydra
from omegaconf import DictConfig

from condense.config import parse


@hydra.main(config_path="pkg://condense.conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    job = parse(cfg)
    from condense.pipeline import distill_task  # after the config is known to be good: it loads torch's stack

    distill_task(job)


if __name__ == "__main__":
    main()
