#!/usr/bin/env bash
# Starts one chatserver with the seed's example keys (until the local stack lands).
set -euo pipefail
cd "$(dirname "$0")/.."
export KEY=${KEY:-TESTING_KEY} ADMIN_KEY=${ADMIN_KEY:-ADMIN_TESTING_KEY}
export LOADBALANCERS=${LOADBALANCERS:-} LOADBALANCER_KEY=${LOADBALANCER_KEY:-LB_TESTING_KEY}
export PORT=${PORT:-8080} ADMIN_PORT=${ADMIN_PORT:-8090} LOG_LEVEL=${LOG_LEVEL:-info}
export STATE_DIR=${STATE_DIR:-.data/chatserver-$PORT}
echo "chatserver: API http://127.0.0.1:$PORT  admin http://127.0.0.1:$ADMIN_PORT  rooms from port ${ROOM_PORT_MIN:-34000}"
exec ./bin/chatserver
