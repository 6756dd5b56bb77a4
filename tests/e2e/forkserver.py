"""`warren` commands for the tests, forked from a process that imported the CLI once.

A `python -m cli` spends about 1.5 s importing (SQLAlchemy, pydantic, falcon, pika, Typer)
before it does anything, and the end-to-end tests run about a hundred commands. This server
imports `cli` once, then forks a child per command: the child takes the command's arguments,
environment and working directory, writes to the caller's own files as its stdout and stderr,
runs `python -m cli` as Python would (`runpy`, so `__main__`, `sys.argv` and the program
name in usage lines are the same), and exits with its exit code after the `atexit`
functions ran. What a command does at run time, settings included, happens in the child, as in
a fresh process; only imports are shared, and Warren does no work at import time.

    python -m tests.e2e.forkserver SOCKET   # serves until SIGTERM

One command at a time: the server waits for each child before it takes the next request, and
it never starts a thread, so a fork never copies a lock another thread holds. A caller that
gives up on a command kills the child by the pid the server sends first.
"""

import atexit
import contextlib
import json
import os
import random
import runpy
import signal
import socket
import struct
import sys
import traceback
from pathlib import Path
from typing import Any

#: Request: the length of a JSON message as a 4-byte signed integer, then the message, with
#: two file descriptors (stdout, stderr) on the first bytes. Answers: the child's pid, then its
#: exit status, each a 4-byte signed integer.
_INT = struct.Struct("!i")


def serve(path: str) -> None:
    import cli  # noqa: F401  (the imports every command shares; the reason for this server)

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        conn, _ = listener.accept()
        with conn:
            message, fds = _receive_request(conn)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                listener.close()
                conn.close()
                _run(json.loads(message), *fds)
            for fd in fds:
                os.close(fd)
            with contextlib.suppress(OSError):  # a caller that gave up has gone
                conn.sendall(_INT.pack(pid))
            _, status = os.waitpid(pid, 0)
            with contextlib.suppress(OSError):
                conn.sendall(_INT.pack(os.waitstatus_to_exitcode(status)))


def _receive_request(conn: socket.socket) -> tuple[bytes, list[int]]:
    """The request's message and file descriptors; a stream socket may deliver a long message
    (an argument of 100 kB) in several reads."""
    data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 2)
    data = bytearray(data)
    while len(data) < _INT.size or len(data) < _INT.size + _INT.unpack_from(data)[0]:
        chunk = conn.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the caller closed the connection mid-request")
        data += chunk
    return bytes(data[_INT.size :]), fds


def _run(request: dict[str, Any], stdout: int, stderr: int) -> None:
    """In the child: become `python -m cli ARGS` and exit as it would."""
    code = 1
    try:
        os.setsid()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the server's own handler, not Python's
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        devnull = os.open(os.devnull, os.O_RDONLY)
        for source, target in ((devnull, 0), (stdout, 1), (stderr, 2)):
            os.dup2(source, target)
            os.close(source)
        random.seed()
        sys.argv = ["cli", *request["args"]]
        code = _main()
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _main() -> int:
    """`runpy`'s `python -m cli`, with the exit code Python's own exit would give."""
    try:
        runpy.run_module("cli", run_name="__main__", alter_sys=True)
    except SystemExit as exit:
        if exit.code is None or isinstance(exit.code, int):
            return exit.code or 0
        print(exit.code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


class ForkedCommand:
    """A command sent to the server at `socket_path`; `wait()` returns its exit code."""

    def __init__(
        self, socket_path: Path, args: list[str], env: dict[str, str], cwd: Path, stdout, stderr
    ) -> None:
        self.conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.conn.connect(str(socket_path))
        request = json.dumps({"args": args, "env": env, "cwd": str(cwd)}).encode()
        framed = _INT.pack(len(request)) + request
        sent = socket.send_fds(self.conn, [framed], [stdout.fileno(), stderr.fileno()])
        self.conn.sendall(framed[sent:])
        self.pid = self._receive_int()

    def wait(self, timeout: float) -> int:
        """The exit code; on `timeout` the command is killed and `TimeoutError` raised."""
        self.conn.settimeout(timeout)
        try:
            return self._receive_int()
        except TimeoutError:
            os.killpg(self.pid, signal.SIGKILL)
            raise
        finally:
            self.conn.close()

    def _receive_int(self) -> int:
        data = bytearray()
        while len(data) < _INT.size:
            chunk = self.conn.recv(_INT.size - len(data))
            if not chunk:
                raise ConnectionError("the CLI fork server closed the connection")
            data += chunk
        return _INT.unpack(data)[0]


if __name__ == "__main__":
    serve(sys.argv[1])
