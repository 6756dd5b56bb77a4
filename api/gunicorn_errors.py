"""gunicorn's own error responses in the contract's JSON shape.

Some requests never reach the application: gunicorn refuses a request line over 4094 bytes
(414), too many or too large header fields (431), a malformed request line, header or chunk
(400), a transfer coding it does not implement (501), and answers them itself with a small
HTML page. Its workers write that page with `gunicorn.util.write_error`, the only hook they
offer short of replacing the worker class, so `install` replaces that function with one that
writes `{"success": false, "error": {...}}` with the same status (but 400 for a 501) and
gunicorn's own message. What gunicorn answers without that function
(nothing, when it drops a connection) is listed in README ("Hostile input").
"""

import json

import gunicorn.util

from api.errors import body, code_of


def json_error(status: int, reason: str, message: str) -> bytes:
    """The whole HTTP response for one of gunicorn's refusals: the connection closes after."""
    content = json.dumps(body(code_of(status), message or reason)).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(content)}\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + content


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """`gunicorn.util.write_error`'s signature, JSON instead of HTML. A transfer coding gunicorn
    does not implement is answered 400, not the 501 RFC 9112 suggests: it is what the client
    sent, and no input may earn a 5xx, which every monitor counts against the server."""
    if status_int == 501:
        status_int, reason = 400, "Bad Request"
    gunicorn.util.write_nonblock(sock, json_error(status_int, reason, mesg))


def install() -> None:
    """Make this process's gunicorn workers answer their own errors in JSON. Idempotent;
    harmless where gunicorn does not serve (the test client)."""
    gunicorn.util.write_error = write_json_error
