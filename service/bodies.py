"""Reading an HTTP answer's body without letting its server decide how much memory it takes.

httpx decodes a `Content-Encoding` as it reads. One layer of gzip turns each read of at most
64 KB into at most about 64 MB; gzip over gzip turns it into gigabytes (a decompression bomb
of a few kilobytes). So an answer with more than one encoding is refused before a byte of its
body is read, and a body is read in chunks up to a limit, never whole. Every client of a URL
from a payload checks the encoding in its transport (`service.netguard`); the readers here
check it again for the clients of operator-configured servers.
"""

import httpx

from service.errors import PermanentError


class AnswerRefused(PermanentError):
    """An answer Warren will not read: more than one content encoding, or a body past the
    reader's limit. Its server chose that, so asking again would not help."""


def check_encoding(response: httpx.Response) -> None:
    """Raise `AnswerRefused` (closing the answer) when it is encoded more than once."""
    codings = response.headers.get_list("Content-Encoding", split_commas=True)
    codings = [c.strip().lower() for c in codings if c.strip().lower() not in ("", "identity")]
    if len(codings) > 1:
        response.close()
        raise AnswerRefused(
            f"{response.url} answered in content encodings {', '.join(codings)!r}: Warren "
            "decodes at most one"
        )


def head(response: httpx.Response, limit: int) -> bytes:
    """The first `limit` bytes of the decoded body, reading no more of it than needed."""
    check_encoding(response)
    data = bytearray()
    for chunk in response.iter_bytes():
        data += chunk[: limit - len(data)]
        if len(data) >= limit:
            break
    return bytes(data)


def read(response: httpx.Response, limit: int, what: str) -> bytes:
    """The whole decoded body; `AnswerRefused` naming `what` when it is longer than `limit`."""
    data = head(response, limit + 1)
    if len(data) > limit:
        response.close()
        raise AnswerRefused(f"{what} is larger than {limit:,} bytes: refused")
    return data
