"""Model: encoder (+LoRA), emission head, constrained CRF, artifact save/load.

Submodules are imported explicitly (``from medner.model.crf import ConstrainedCRF``) so that importing
this package stays cheap.
"""
