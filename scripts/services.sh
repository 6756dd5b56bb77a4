#!/usr/bin/env bash
# Make sure the local services Warren needs are up: PostgreSQL on 127.0.0.1:5432 and RabbitMQ
# on 127.0.0.1:5672. Starts whichever is down (on a machine where they are installed as Debian
# packages), and enables the RabbitMQ management UI when RabbitMQ allows it. Idempotent.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 120); do
    port_open "$port" && return 0
    sleep 0.5
  done
  echo "services: $name did not come up on 127.0.0.1:$port" >&2
  exit 1
}

if ! port_open 5432; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    echo "services: starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
  fi
  wait_port 5432 PostgreSQL
fi

if ! port_open 5672; then
  if command -v rabbitmq-server >/dev/null; then
    echo "services: starting RabbitMQ"
    rabbitmq-server -detached
  fi
  wait_port 5672 RabbitMQ
fi

if [ "${WARREN_ENABLE_MANAGEMENT:-1}" = 1 ] && command -v rabbitmq-plugins >/dev/null \
  && [ "$(id -u)" = 0 ]; then
  if ! rabbitmq-plugins list -e -m 2>/dev/null | grep -qx rabbitmq_management; then
    echo "services: enabling the RabbitMQ management UI (http://127.0.0.1:15672, guest/guest)"
    rabbitmq-plugins enable rabbitmq_management >/dev/null 2>&1 \
      || echo "services: could not enable rabbitmq_management (continuing)" >&2
  fi
fi
