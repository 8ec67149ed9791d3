"""Knowledge merging and forgetting across a task sequence, on Avalanche: examples, label layouts and benchmarks
(:mod:`.data`), the continual model (:mod:`.model`), the replay memories as storage policies (:mod:`.memories`, the
mean-matched one in :mod:`.mean_matching`), the plugins (:mod:`.plugins`), and the strategies and their runner
(:mod:`.strategies`)."""
