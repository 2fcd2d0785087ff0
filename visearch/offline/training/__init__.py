"""Training of catalogue models on frozen image embeddings (``visearch train``).

``data``: the catalogues we can train on, their tags, and the frozen-embedding cache (numpy only).
``metrics``: retrieval and classification figures (numpy only).
``heads``: the torch networks, losses, training loops and ONNX export (needs the ``build`` extra;
import it only on the training path). What training installs is read by ``shared/models/trained.py``.
"""
