#!/usr/bin/env bash
# A Cloud TPU VM pod run: create the slice, install the code on every worker, start main.py
# on all of them (they join through JAX's TPU auto-detection, VIVI_DISTRIBUTED=auto), stream
# the logs, and delete the slice when the run ends.
#
#   TPU_NAME=vivi-v4-64 ZONE=us-central2-b ACCELERATOR=v4-64 \
#   launch/tpu_pod.sh --config=configs/vivi_obj.py --workdir=gs://BUCKET/runs/vivi_obj \
#       --config.data.dataset=gs://BUCKET/data/yt8m
#
# Needs: gcloud authenticated for a project with TPU quota; the workdir and the dataset on
# GCS (every worker reads and writes them); KEEP=1 keeps the slice afterwards. Pre-emption
# (SPOT=1) sends SIGTERM: the run saves on every host at the same step and exits; run this
# script again to resume from the workdir. Not tested here (no TPU access).
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}" "${ACCELERATOR:?set ACCELERATOR, e.g. v4-64}"
VERSION="${VERSION:-tpu-ubuntu2204-base}"
REPO_DIR="$(cd "$(dirname "$0")/.." && pwd)"
tpu() { gcloud compute tpus tpu-vm "$@" --zone="$ZONE"; }
on_all() { tpu ssh "$TPU_NAME" --worker=all --command="$1"; }

if ! tpu describe "$TPU_NAME" > /dev/null 2>&1; then
  tpu create "$TPU_NAME" --accelerator-type="$ACCELERATOR" --version="$VERSION" \
    ${SPOT:+--spot}
fi
cleanup() { [[ -n "${KEEP:-}" ]] || tpu delete "$TPU_NAME" --quiet; }
trap cleanup EXIT

# Ship this checkout (not a remote branch) and install it with the TPU jaxlib.
tar -C "$REPO_DIR" --exclude=.git -czf /tmp/vivi_code.tgz .
tpu scp /tmp/vivi_code.tgz "$TPU_NAME":/tmp/ --worker=all
on_all 'mkdir -p ~/vivi && tar -C ~/vivi -xzf /tmp/vivi_code.tgz &&
        cd ~/vivi && pip install -q -e . "jax[tpu]" \
          -f https://storage.googleapis.com/jax-releases/libtpu_releases.html'

# Every worker runs the same command; the output of all of them streams here.
args=$(printf '%q ' "$@")
on_all "cd ~/vivi && VIVI_DISTRIBUTED=auto python main.py $args 2>&1 | sed \"s/^/[\$(hostname)] /\""
