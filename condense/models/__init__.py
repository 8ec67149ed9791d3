"""The encoders and what is computed with them: loading and the functional forward (:mod:`.encoders`), linear heads
(:mod:`.heads`), tokenising and cached frozen features (:mod:`.features`), attention maps and attention labels
(:mod:`.attention`), and models assembled from split PyPI pieces (:mod:`.assets`)."""
