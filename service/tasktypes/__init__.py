"""Task-type logic shared by the trainer and the serving engine, free of tensors.

Every function here works on plain lists, ints, floats and strings, so the trainer can call
it while building batches and the serving engine while decoding predictions, and both get
the same result.

Modules:
    tags         BIO tag parsing, IOB1 to IOB2 conversion, entity spans over token indexes
    alignment    word labels on sub-tokens, and overlapping windows over long sentences
    ner_offsets  words with character offsets in raw text, and entities in character offsets
    qa           extractive QA: context windows, answer positions, best-span search
    multi_label  label sets as indicator vectors, and the threshold decision rule
    metrics      entity-level F1, SQuAD exact match and F1, multi-label F1, correlations
"""
