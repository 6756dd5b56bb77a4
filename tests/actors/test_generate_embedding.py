"""generate-embedding with the real local model (all-MiniLM-L6-v2 on the CPU) and with an
OpenAI-compatible /embeddings server on 127.0.0.1; GET /embeddings/search ranks by meaning."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa
from falcon import testing
from pydantic import SecretStr

from actors.generate_embedding import GenerateEmbedding, generate_embedding
from api.app import create_app
from service import db
from service.client import Warren
from service.embeddings import EmbeddingFailed
from service.errors import PermanentError, RetryLater, ValidationFailed
from service.settings import Settings
from tests.helpers import wait_for

CAT, KITTEN, SHEET = (
    "a cat sat on the mat",
    "a kitten rested on the rug",
    "quarterly spreadsheet totals",
)


@pytest.fixture
def table(engine) -> Iterator[None]:
    yield
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS embeddings"))
    db.job_type_engine.cache_clear()


def vector(engine, namespace: str, key: str) -> list[float]:
    with engine.connect() as conn:
        return conn.scalar(
            sa.text("SELECT vector FROM embeddings WHERE namespace = :n AND key = :k"),
            {"n": namespace, "k": key},
        )


def test_the_local_model_gives_unit_vectors_that_follow_meaning(
    settings, running_job, engine, table
):
    running_job(settings=settings)

    result = generate_embedding(
        GenerateEmbedding(
            text=[CAT, KITTEN, SHEET], namespace="pets", keys=["cat", "kitten", "sheet"]
        )
    )

    assert result["dimensions"] == 384 and result["embedded"] == 3 and result["reused"] == 0
    cat, kitten, sheet = (vector(engine, "pets", k) for k in ("cat", "kitten", "sheet"))
    assert abs(sum(x * x for x in cat) - 1) < 1e-3
    dot = lambda a, b: sum(x * y for x, y in zip(a, b, strict=True))  # noqa: E731
    assert dot(cat, kitten) > dot(cat, sheet) + 0.3

    again = generate_embedding(GenerateEmbedding(text=CAT, namespace="other", key="c"))
    assert again["reused"] == 1 and again["embedded"] == 0  # the same text is not embedded again


def test_search_ranks_the_nearest_keys_first(warren, worker, engine, table):
    texts = {"cat": CAT, "kitten": KITTEN, "sheet": SHEET}
    job = warren.enqueue(
        "generate-embedding",
        {"text": list(texts.values()), "namespace": "pets", "keys": list(texts)},
    )
    wait_for(lambda: warren.get(job.id).status == "completed", timeout=60)
    client = testing.TestClient(create_app(warren=warren))

    answer = client.simulate_get(
        "/embeddings/search", params={"namespace": "pets", "text": "a small cat sleeping", "k": "2"}
    )

    assert answer.status_code == 200, answer.json
    assert {r["key"] for r in answer.json["results"]} == {"cat", "kitten"}  # not the spreadsheet
    missing = client.simulate_get("/embeddings/search", params={"namespace": "none", "text": "x"})
    assert missing.status_code == 404
    assert client.simulate_get("/embeddings/search", params={"text": "x"}).status_code == 400


class Server:
    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], Any]] = []
        self.answers: list[tuple[int, dict[str, str], bytes]] = []
        self.url = ""


@pytest.fixture
def server() -> Iterator[Server]:
    model = Server()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            model.requests.append((dict(self.headers.items()), body))
            if model.answers:
                status, headers, content = model.answers.pop(0)
            else:
                data = [
                    {"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0, 0.5]}
                    for i, t in enumerate(body["input"])
                ]
                status, headers, content = 200, {}, json.dumps({"data": data}).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    model.url = f"http://127.0.0.1:{http.server_address[1]}/v1"
    thread = threading.Thread(target=http.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield model
    http.shutdown()
    http.server_close()


def remote(settings: Settings, server: Server) -> Settings:
    update = {
        "embeddings_backend": "openai",
        "embeddings_url": server.url,
        "embeddings_model": "text-embedding-3-small",
        "embeddings_api_key": SecretStr("sk-local"),
    }
    return settings.model_copy(update=update)


def test_an_openai_compatible_server_embeds_in_one_request(
    settings, running_job, engine, server, table
):
    running_job(settings=remote(settings, server))

    result = generate_embedding(GenerateEmbedding(text=["ab", "abcd"], namespace="r"))

    [(headers, body)] = server.requests
    assert headers["Authorization"] == "Bearer sk-local"
    assert body == {"model": "text-embedding-3-small", "input": ["ab", "abcd"]}
    assert result["dimensions"] == 3 and result["model"] == "text-embedding-3-small"
    assert vector(engine, "r", result["keys"][1]) == [4.0, 1.0, 0.5]


def test_the_servers_429_and_4xx(settings, running_job, server, table):
    running_job(settings=remote(settings, server))
    server.answers.append((429, {"Retry-After": "5"}, b"slow down"))
    server.answers.append((400, {}, b'{"error": "no such model"}'))

    with pytest.raises(RetryLater) as raised:
        generate_embedding(GenerateEmbedding(text="x", namespace="r"))
    assert raised.value.seconds == 5
    with pytest.raises(PermanentError, match="no such model"):
        generate_embedding(GenerateEmbedding(text="x", namespace="r"))


@pytest.mark.parametrize(
    "payload",
    [{"text": [], "namespace": "n"}, {"text": "x", "namespace": "bad name"},
     {"text": ["a", "b"], "namespace": "n", "key": "k"},
     {"text": ["a", "b"], "namespace": "n", "keys": ["k"]}, {"text": "x" * 9000, "namespace": "n"},
     {"text": ["a", "b"], "namespace": "n", "keys": ["k", "k"]},
     {"text": "a", "namespace": "n", "keys": ["k" * 501]}],
)  # fmt: skip
def test_a_bad_request_is_refused_at_enqueue(warren, payload):
    with pytest.raises(ValidationFailed):
        warren.enqueue("generate-embedding", payload)


def answer(*embeddings: Any, indexes: list[Any] | None = None) -> tuple[int, dict, bytes]:
    indexes = list(range(len(embeddings))) if indexes is None else indexes
    data = [{"index": i, "embedding": e} for i, e in zip(indexes, embeddings, strict=True)]
    return 200, {}, json.dumps({"data": data}).encode()


GOOD = [1.0, 2.0]


def literal(number: str) -> tuple[int, dict, bytes]:
    """An answer whose first vector starts with `number`, as written."""
    data = f'[{{"index": 0, "embedding": [{number}, 1]}}, {{"index": 1, "embedding": [1, 2]}}]'
    return 200, {}, f'{{"data": {data}}}'.encode()


@pytest.mark.parametrize(
    "reply",
    [
        literal("NaN"),  # not JSON
        literal("1e400"),  # inf
        answer([1e300, 1.0], GOOD),  # beyond a real
        answer([True, 1.0], GOOD),
        answer(["0.5", 1.0], GOOD),
        answer([10**400, 1.0], GOOD),
        answer([0.0, 0.0], GOOD),  # no direction
        answer([], []),
        answer(GOOD, [1.0, 2.0, 3.0]),  # ragged
        answer(GOOD, GOOD, indexes=[0, 0]),
        answer(GOOD, GOOD, indexes=[0, 2]),
        answer(GOOD),  # one vector for two texts
        (200, {}, b'{"data": "everything"}'),
        (200, {}, b"[1, 2]"),
    ],
)  # fmt: skip
def test_an_answer_that_is_not_one_usable_vector_per_text_is_retried_and_stores_nothing(
    settings, running_job, engine, server, table, reply
):
    running_job(settings=remote(settings, server))
    server.answers.append(reply)

    with pytest.raises(EmbeddingFailed):
        generate_embedding(GenerateEmbedding(text=["ab", "cd"], namespace="r", keys=["a", "b"]))

    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM embeddings")) == 0


@pytest.fixture
def remote_api(settings, engine, server, clean) -> Iterator[testing.TestClient]:
    """The API of a deployment whose embeddings come from `server`."""
    warren = Warren(remote(settings, server), engine=engine)
    yield testing.TestClient(create_app(warren=warren))
    warren.publisher.close()


def test_search_ranks_only_vectors_of_the_querys_length_and_answers_valid_json(
    settings, running_job, engine, server, table, remote_api
):
    settings = remote(settings, server)
    running_job(settings=settings)
    server.answers.append(answer([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]))
    generate_embedding(GenerateEmbedding(text=["x", "y"], namespace="r", keys=["x", "y"]))
    server.answers.append(answer([1.0, 1.0]))  # another deployment of the model: 2 dimensions
    generate_embedding(GenerateEmbedding(text="z", namespace="r", key="z"))
    with engine.begin() as conn:  # a zero vector stored before vectors were checked
        conn.execute(
            sa.text(
                "INSERT INTO embeddings (namespace, key, model, dimensions, vector, text_sha256)"
                " VALUES ('r', 'zero', 'text-embedding-3-small', 3, '{0,0,0}', 'h')"
            )
        )
    server.answers.append(answer([2.0, 0.5, 0.0]))

    found = remote_api.simulate_get("/embeddings/search", params={"namespace": "r", "text": "q"})

    assert found.status_code == 200, found.text
    assert [r["key"] for r in json.loads(found.text)["results"]] == ["x", "y"]  # strict JSON


@pytest.mark.parametrize(
    "reply", [(500, {}, b"model crashed"), (401, {}, b"bad key"), answer([0.0, 0.0, 0.0])]
)
def test_search_says_502_when_the_embeddings_server_fails(
    settings, running_job, server, table, remote_api, reply
):
    running_job(settings=remote(settings, server))
    generate_embedding(GenerateEmbedding(text="x", namespace="r", key="x"))
    server.answers.append(reply)

    failed = remote_api.simulate_get("/embeddings/search", params={"namespace": "r", "text": "q"})

    assert failed.status_code == 502
    assert failed.json["error"]["code"] == "upstream_failed"
    assert "could not embed the text" in failed.json["error"]["message"]
