"""nginx in front of a `warren api`, as the README recommends, for benchmarks and tests.

The site is `deploy/nginx/warren.conf.template`, the file deployments use, with its
placeholders filled in; around it a minimal main configuration of our own, so that nginx runs
as an ordinary child process: not a daemon, its pid file, logs and temporary files in a
directory of its own, listening on a free port of 127.0.0.1. Nothing of the machine's nginx
(its /etc/nginx, its service) is used or touched.
"""

from __future__ import annotations

import shutil
import string
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE_TEMPLATE = ROOT / "deploy" / "nginx" / "warren.conf.template"
NOT_INSTALLED = "nginx is not installed (Debian: apt-get install -y nginx)"

MAIN_CONF = """\
daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile {open_files};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;

events {{
    worker_connections {connections};
}}

http {{
    access_log off;
    # Workers run as nobody, who may not enter the temporary directory: never spill there.
    proxy_max_temp_file_size 0;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/warren.conf;
}}
"""


def nginx_binary() -> str | None:
    """The nginx executable, or None when it is not installed (it lives in /usr/sbin, which
    an unprivileged user's PATH may lack)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def render_site(listen: str, upstream: str, max_payload_bytes: int) -> str:
    """The shipped site template with its placeholders filled in, as envsubst would: nginx's
    own variables (`$host`, ...) are left alone."""
    template = string.Template(SITE_TEMPLATE.read_text())
    return template.safe_substitute(
        WARREN_NGINX_LISTEN=listen,
        WARREN_API_UPSTREAM=upstream,
        WARREN_MAX_PAYLOAD_BYTES=str(max_payload_bytes),
    )


def write_config(
    prefix: Path,
    listen_port: int,
    upstream: str,
    max_payload_bytes: int = 131072,
    connections: int = 4096,
    workers: int = 1,
) -> Path:
    """Write nginx.conf and warren.conf into `prefix`; return the path of nginx.conf. nginx
    listens on 127.0.0.1:`listen_port` and passes requests to `upstream` (host:port)."""
    prefix.mkdir(parents=True, exist_ok=True)
    site = render_site(f"127.0.0.1:{listen_port}", upstream, max_payload_bytes)
    (prefix / "warren.conf").write_text(site)
    main = MAIN_CONF.format(
        prefix=prefix,
        workers=workers,
        connections=connections,
        open_files=2 * connections + 64,
    )
    conf = prefix / "nginx.conf"
    conf.write_text(main)
    return conf


def nginx_argv(binary: str, prefix: Path, conf: Path) -> list[str]:
    """The command line of an nginx that reads only `conf` and writes only under `prefix`
    (`-e` keeps it from opening the system's error log before it reads its configuration)."""
    return [binary, "-p", f"{prefix}/", "-c", str(conf), "-e", str(prefix / "error.log")]
