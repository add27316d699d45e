#!/usr/bin/env bash
# The Python wheels the GPU machine lacks, for bench/train_speed.py (round 3, with Unsloth and
# Liger) and the stage scripts (bench/gpu_profiles.py): downloaded here for CPython 3.12 on
# manylinux x86-64, to be carried (64 MiB a call, the repository included) and installed there with
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site DIR/*.whl
#
#   bash bench/device_wheels.sh DIR train    # train_speed.py: bitsandbytes, Liger, Unsloth (~14 MiB)
#   bash bench/device_wheels.sh DIR stages   # the stage scripts: bitsandbytes, datasets, DVCLive (~6 MiB)
#   bash bench/device_wheels.sh DIR all      # both (~17 MiB): one folder for both GPU commands
#
# The machine (KINDS.md) has torch 2.11 (CUDA 13.0), transformers 5.17, peft, accelerate, triton,
# pandas, pyarrow, xxhash, requests, psutil, tqdm, pathspec, einops, pillow, protobuf: not carried.
# Two wheels are trimmed of files that machine never loads, so that they fit:
# - bitsandbytes: only libbitsandbytes_cuda130.so and the CPU library are kept (torch there is
#   +cu130, and bitsandbytes loads the library named after torch.version.cuda); 41 MiB → 2 MiB;
# - unsloth: its `studio/` web app (a chat UI, 80 of its 88 MB unpacked) is left out; the
#   training code (unsloth/) is untouched.
# What Unsloth 2026.10.9 itself requires and why each is or is not carried: bench/NOTES.md.
set -euo pipefail
dir=${1:?usage: device_wheels.sh DIR train|stages|all}
what=${2:?usage: device_wheels.sh DIR train|stages|all}
case $what in train | stages | all) ;; *)
  echo "device_wheels.sh: unknown set '$what' (train, stages, all)" >&2
  exit 2
  ;;
esac
mkdir -p "$dir"
download() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dir" "$@"
}
# drop the files under the given paths from a wheel (and from its RECORD), in place
trim() {
  local wheel work
  wheel=$(realpath "$1")
  shift
  work=$(mktemp -d)
  (cd "$work" && python3 -m zipfile -e "$wheel" .)
  for path in "$@"; do rm -rf "${work:?}/$path"; done
  python3 - "$work" "$@" <<'PY'
import glob, sys
work, drop = sys.argv[1], sys.argv[2:]
(record,) = glob.glob(f"{work}/*.dist-info/RECORD")
lines = open(record).read().splitlines()
kept = [l for l in lines if not any(l.split(",")[0] == d or l.startswith(d + "/") for d in drop)]
open(record, "w").write("\n".join(kept) + "\n")
PY
  rm "$wheel"
  (cd "$work" && python3 -m zipfile -c "$wheel" $(ls -A))
  rm -rf "$work"
}

download bitsandbytes==0.50.2
libs=()
for lib in cuda118 cuda121 cuda124 cuda126 cuda128 cuda132 rocm64 rocm70 rocm71 rocm72 rocm714 \
  rocm715 xpu2025 xpu2026; do
  libs+=("bitsandbytes/libbitsandbytes_$lib.so")
done
trim "$(ls "$dir"/bitsandbytes-0.50.2-*.whl)" "${libs[@]}"
# datasets 4.8.5: the newest datasets Unsloth 2026.10.9 and TRL 1.15 accept (< 5; kotune ≥ 3)
download datasets==4.8.5 dill==0.4.1 multiprocess==0.70.19 fsspec==2026.2.0

if [ "$what" = train ] || [ "$what" = all ]; then
  download liger-kernel==0.8.5
  # Unsloth 2026.10.9 is the newest that accepts transformers 5.17 (<=5.17.0) and torch 2.11
  # (<2.15); it needs TRL <= 1.15, unsloth_zoo, torchao, cut_cross_entropy, msgspec, tyro.
  # xformers (optional: Unsloth falls back to torch's sdpa) and diffusers, hf_transfer, structlog,
  # json5, nest_asyncio (not imported when training) are not carried.
  download unsloth==2026.10.9 unsloth-zoo==2026.10.9 trl==1.15.0 torchao==0.18.0 \
    cut_cross_entropy==25.1.1 msgspec==0.22.0 tyro==1.0.16 docstring-parser==0.18.0 \
    typeguard==4.6.1
  trim "$(ls "$dir"/unsloth-2026.10.9-*.whl)" "studio"
fi
if [ "$what" = stages ] || [ "$what" = all ]; then
  # the train stage's curves (DVCLive) import dvc and part of its stack
  download dvclive==3.49.1 dvc==3.67.1 dvc-render==1.0.2 dvc-studio-client==0.23.0 funcy==2.1 \
    ruamel.yaml==0.19.1 dulwich==1.2.21 dvc-data==3.18.3 dvc-http==2.32.0 dvc-objects==5.2.0 \
    flatten-dict==0.5.0 flufl.lock==9.2.0 atpublic==9.0.0 pygtrie==2.6.2 scmrepo==3.6.2 \
    sqltrie==0.11.3 diskcache==5.6.3 dpath==2.2.0 voluptuous==0.16.0 zc.lockfile==4.0
fi
total=$(du -cb "$dir"/*.whl | tail -1 | cut -f1)
echo "$(ls "$dir"/*.whl | wc -l) wheels, $((total / 1024 / 1024)) MiB in $dir"
if [ "$total" -gt $((60 * 1024 * 1024)) ]; then
  echo "device_wheels.sh: over 60 MiB: they and the repository will not fit one call's 64 MiB" >&2
  exit 1
fi
