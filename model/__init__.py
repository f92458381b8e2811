"""The OneLoc model in pure PyTorch (no Ray): geo-aware semantic IDs, encoder, prompt, decoder,
constrained beam search. Nothing is imported here, so that ``oneloc.config`` (which reads
``model/config.py``) never pulls in torch. Import from the modules:

    from oneloc.model.semantic_ids import fit_tokenizer, SemanticIdTokenizer   # tokenizer
    from oneloc.model.context import catalog_context, neighbor_context         # context vectors
    from oneloc.model.batch import make_batch                                  # the batch format
    from oneloc.model.oneloc import OneLoc, build_model                        # the model
    from oneloc.model.beam_search import beam_search                           # top-k decoding
    from oneloc.model.checkpoint import save_checkpoint, load_checkpoint       # one checkpoint format
"""
