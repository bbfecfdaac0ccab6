"""Validate weights with COCO metrics: `python val.py model=best.pt data=DATA.yaml [key=value ...]`."""

import sys

from umop_yolo.cli import main

if __name__ == "__main__":
    sys.exit(main(["val", *sys.argv[1:]]))
