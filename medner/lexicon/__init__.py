"""ICD lexicons: loaders for the official files, aliases, the project's lexicon file, and matching.

    from medner.lexicon import build_lexicon, load_lexicon, LexiconMatcher
    lexicon = load_lexicon("lexicons/build/lexicon_zh.tsv")        # entries + fingerprint
    spans = lexicon.matcher(label_priority=["疾病和诊断", "手术"]).find(text)

Never imports torch.
"""
from medner.lexicon.build import BuildResult, LexiconConfig, SourceSpec, build_lexicon, read_config
from medner.lexicon.codes import dotted_icd10, is_valid_code
from medner.lexicon.entry import BadRow, LexiconEntry, LoadReport, LoadResult
from medner.lexicon.loaders import (LOADERS, load_csv, load_icd9cm3_xlsx, load_icd10_xlsx, load_list, load_po,
                                    load_project_tsv, load_xlsx)
from medner.lexicon.matcher import LexiconMatcher, Match
from medner.lexicon.normalize import Alias, aliases, fold, fold_with_offsets
from medner.lexicon.store import Lexicon, load_lexicon, write_lexicon

__all__ = [
    "Alias", "BadRow", "BuildResult", "LOADERS", "Lexicon", "LexiconConfig", "LexiconEntry", "LexiconMatcher",
    "LoadReport", "LoadResult", "Match", "SourceSpec", "aliases", "build_lexicon", "dotted_icd10", "fold",
    "fold_with_offsets", "is_valid_code", "load_csv", "load_icd10_xlsx", "load_icd9cm3_xlsx", "load_lexicon",
    "load_list", "load_po", "load_project_tsv", "load_xlsx", "read_config", "write_lexicon",
]
