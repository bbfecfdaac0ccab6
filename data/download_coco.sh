#!/usr/bin/env bash
# Download COCO 2017 detection (about 19 GB of zips) into DIR and convert its labels once. Run it by hand:
# umop-yolo never downloads at run time.   Usage: bash data/download_coco.sh [DIR]
# DIR defaults to ../datasets/coco beside the repo, which is what data/coco.yaml expects; for another DIR, set
# `path:` in data/coco.yaml, or train with the data.yaml path this script prints at the end.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:-$REPO/../datasets/coco}"
mkdir -p "$DIR/images" && cd "$DIR"
for url in http://images.cocodataset.org/annotations/annotations_trainval2017.zip \
           http://images.cocodataset.org/zips/val2017.zip \
           http://images.cocodataset.org/zips/train2017.zip; do
  zip="$(basename "$url")"
  if [ ! -f "$zip" ]; then
    curl -L --fail --retry 3 -C - -o "$zip.part" "$url"
    mv "$zip.part" "$zip"
  fi
done
unzip -q -n annotations_trainval2017.zip   # -> annotations/instances_{train,val}2017.json
unzip -q -n val2017.zip -d images          # -> images/val2017/
unzip -q -n train2017.zip -d images        # -> images/train2017/
# YOLO labels + symlinks into the umop-yolo cache ($UMOP_CACHE_DIR, default ~/.cache/umop_yolo)
python -c "from umop_yolo.data import convert; print(convert('coco', '$DIR'))"
