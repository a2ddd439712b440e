#!/bin/bash -eu
# ClusterFuzzLite build: the same model-only targets as OSS-Fuzz.
exec "$SRC/pinfuzz/ci/oss-fuzz/build.sh"
