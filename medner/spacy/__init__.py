"""spaCy adapters: the ``medner`` and ``medner_lexicon`` pipeline components and displaCy rendering."""
