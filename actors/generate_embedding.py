"""generate-embedding: vectors for one text or up to 256, stored under their keys.

The vectors come from `service.embeddings` (a local model, or an OpenAI-compatible server)
and go to the `embeddings` table under (namespace, key, model); a text's key defaults to its
sha256. A text already embedded with the same model, under any key, is not embedded again:
its stored vector is reused.
"""

import hashlib
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from service import embeddings
from service.registry import current_settings, job_type

Key = Annotated[str, Field(min_length=1, max_length=500)]

_KNOWN = sa.text(
    """
    SELECT DISTINCT ON (text_sha256) text_sha256, vector FROM embeddings
     WHERE model = :model AND text_sha256 = ANY(CAST(:hashes AS text[]))
    """
)
_STORE = sa.text(
    """
    INSERT INTO embeddings (namespace, key, model, dimensions, vector, text_sha256)
    VALUES (:namespace, :key, :model, :dimensions, CAST(:vector AS real[]), :hash)
    ON CONFLICT (namespace, key, model) DO UPDATE
       SET vector = excluded.vector, dimensions = excluded.dimensions,
           text_sha256 = excluded.text_sha256, created_at = now()
    """
)


class GenerateEmbedding(BaseModel):
    """`text` (a string, or a list of up to 256), `namespace`, and `key`/`keys`; `model` for
    an OpenAI-compatible backend."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    text: str | list[str] = Field()
    namespace: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
    key: Key | None = None
    keys: list[Key] | None = Field(default=None, min_length=1, max_length=256)
    model: str | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _texts_and_keys(self) -> "GenerateEmbedding":
        texts = self.texts()
        if not 1 <= len(texts) <= 256 or any(not 1 <= len(t) <= 8192 for t in texts):
            raise ValueError("text is 1 to 256 strings of 1 to 8,192 characters")
        if self.key is not None and (self.keys is not None or len(texts) != 1):
            raise ValueError("key names a single text; use keys for a list")
        if self.keys is not None and len(self.keys) != len(texts):
            raise ValueError("keys must name each text, in order")
        if self.keys is not None and len(set(self.keys)) != len(self.keys):
            raise ValueError("keys must be distinct: a repeated key would keep only one vector")
        return self

    def texts(self) -> list[str]:
        return [self.text] if isinstance(self.text, str) else list(self.text)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@job_type("generate-embedding", payload=GenerateEmbedding, max_attempts=5, timeout_seconds=600)
def generate_embedding(payload: GenerateEmbedding) -> dict[str, Any]:
    """Embed what is new, store every vector; return `{count, dimensions, keys, model,
    embedded, reused}`."""
    settings = current_settings()
    model = embeddings.model_name(settings, payload.model)
    texts = payload.texts()
    hashes = [_sha256(text) for text in texts]
    keys = payload.keys or ([payload.key] if payload.key else hashes)
    engine = embeddings.engine(settings)
    with engine.connect() as conn:
        known = dict(conn.execute(_KNOWN, {"model": model, "hashes": hashes}).all())
    new = [text for text, h in zip(texts, hashes, strict=True) if h not in known]
    if new:
        fresh = embeddings.embed(settings, new, model)
        known |= {_sha256(text): vector for text, vector in zip(new, fresh, strict=True)}
    vectors = [list(known[h]) for h in hashes]
    rows = [
        {"namespace": payload.namespace, "key": key, "model": model, "hash": h}
        | {"dimensions": len(vector), "vector": vector}
        for key, h, vector in zip(keys, hashes, vectors, strict=True)
    ]
    with engine.begin() as conn:
        conn.execute(_STORE, rows)
    return {
        "count": len(texts),
        "dimensions": len(vectors[0]),
        "keys": keys,
        "model": model,
        "embedded": len(set(_sha256(t) for t in new)),
        "reused": len(texts) - len(new),
    }
