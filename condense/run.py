"""``python -m condense.run`` (or ``condense-run``): the main job, a task sequence with every replay strategy.

    python -m condense.run task_sequence=agnews_then_sst2
    python -m condense.run 'task_sequence.tasks=[rotten_tomatoes,sst2,{name: mine, path: DIR}]'

The config is parsed and checked here, once, before anything is loaded; :func:`condense.jobs.sequence.run_sequence`
does the work and writes ``results.json``, ``results.md`` and the figures into ``out``.
"""

import hydra
from omegaconf import DictConfig

from condense.config.parsing import parse


@hydra.main(config_path="pkg://condense.configs", config_name="run", version_base="1.3")
def main(cfg: DictConfig) -> None:
    job = parse(cfg)
    from condense.report.tables import results_table  # after the config is known to be good: these load torch's stack
    from condense.jobs.sequence import run_sequence

    print(results_table(run_sequence(job)))  # the CLI's answer: the table, at the end of the log


if __name__ == "__main__":
    main()
