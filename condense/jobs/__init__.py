"""The jobs the commands run: one task distilled and evaluated (:mod:`.distill_task`), a task sequence end to end
(:mod:`.sequence`) with its super-dataset (:mod:`.super_dataset`), a search trial's split (:mod:`.search`), and a
folder of artefacts as one table (:mod:`.collect`)."""
