"""How well a set trains a model: the learned protocol, the standard fine-tuning recipe and the linear probe
(:mod:`.protocols`); a distilled set against real subsets of its size (:mod:`.baselines`); fine-tuning on the entire
dataset, the seed table's reference (:mod:`.reference`); few-shot prompting with a causal LM (:mod:`.prompting`)."""
