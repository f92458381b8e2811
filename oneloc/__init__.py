"""OneLoc on Ray: a streaming, geo-aware generative recommender.

The top-level folders of the repository are the sub-packages of this namespace:
``schemas/`` -> ``oneloc.schemas``, ``model/`` -> ``oneloc.model`` and so on.
"""

__version__ = "0.1.0"
