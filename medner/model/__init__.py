"""The network: the tagger (encoder -> head -> CRF), the constrained CRF, token windows and alignment of
character spans to tokens, lexicon features, and device/precision choice.

Submodules are imported explicitly (``from medner.model.crf import ConstrainedCRF``) so that importing this
package stays cheap.
"""
