"""``python -m condense.distill`` (or ``condense-distill``): distil one task end to end, then evaluate it.

    python -m condense.distill task=ag_news distill.ipc=1 out=DIR
    python -m condense.distill -m task=sst2,rotten_tomatoes distill.seed=0,1      # a sweep: condense.sweep
    python -m condense.distill -m hydra/sweeper=distill_search task=sst2          # a search: condense.jobs.search
    python -m condense.distill --help

The config is parsed and checked here, once, before anything is loaded; :func:`condense.jobs.distill_task.distill_task`
does the work. What the function returns is what a sweeper sees: a search trial's validation accuracy.
"""

import hydra
from omegaconf import DictConfig

from condense import sweep
from condense.config.parsing import parse


@hydra.main(config_path="pkg://condense.configs", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    job = sweep.prepare(parse(cfg))  # in a sweep: the job's own folder
    # After the config is known to be good: these load torch's stack.
    from condense.jobs.distill_task import distill_task
    from condense.jobs.search import objective

    return objective(job, distill_task(job))


if __name__ == "__main__":
    main()
