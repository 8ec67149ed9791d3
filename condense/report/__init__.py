"""Turning results into text and figures: summaries, number formatting and Markdown tables (:mod:`.tables`), and
forgetting curves and accuracy matrices (:mod:`.plots`)."""
