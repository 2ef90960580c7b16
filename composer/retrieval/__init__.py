"""Retrieval: finding the images that depict what an image slot asks for.

A service over the image store and the models, not a model: it may import models (embedders,
CLIP, OCR, BM25) and storage (the image store, the database for pgvector).

The contract, for a caller:
- gives a `Retriever(store, embedder, spotter=None, ..., clip=None, index_dir=None,
  vector_db=None)` (retriever.py) an ImageStore and the models to score with; calls
  `index()` after images change (embeds what is missing, reads visible text, saves indexes);
- asks `search(query, k, exclude, owner=, source=, license=)` and gets back up to k
  `ImageCandidate`s (composer.types), best first; `rank(...)` gives the same ranking as
  `ScoredImage`s with each signal's part (blend.py);
- never sees a vector index: each signal (signals.py) keeps one that holds the VectorIndex
  contract (contract.py: upsert, remove, search -> [(id, cosine)], save/load, ids, dim,
  model), in this process (exact.py, hnsw.py; chosen by size in choose.py, saved as in
  index_files.py) or in PostgreSQL (pgvector.py);
- for images the library lacks, `web.importer.search_web_images(searcher, store, query, k)`
  imports openly licensed ones from Openverse or Wikimedia Commons and returns
  (LibraryImages, message or None); it never raises for web failures.
"""
